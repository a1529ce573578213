"""A tuning worker in its own process (tests of shared and resumed studies):
``python -m tests.ml.tuning_worker CACHE.pkl STORAGE_URL N_TRIALS CHECKPOINTS``."""

from __future__ import annotations

import pickle
import sys

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.training.tuning import run_study
from tests.ml.test_tuning import settings, tiny_train

if __name__ == "__main__":
    cache_path, url, n_trials, checkpoints = sys.argv[1:5]
    with open(cache_path, "rb") as handle:
        cache, ids = pickle.load(handle)
    run_study(
        ImageCache.from_arrays(cache), ids, tiny_train(checkpoints), settings(url, int(n_trials))
    )
