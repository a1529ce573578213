"""``patchcore``: a coreset of normal patch features; a patch's score is its distance to
the nearest one (anomalib's ``PatchcoreModel``, Roth et al. 2022)."""

from __future__ import annotations

from anomalib.models.image.patchcore.torch_model import PatchcoreModel

from anomaly_lens.ml.anomaly import Method, register_method, seeded
from anomaly_lens.ml.anomaly.weights import load_package_weights

MIN_CORESET = 100


@register_method("patchcore")
class PatchCore(Method):
    def create(self, backbone, layers, settings):
        model = PatchcoreModel(
            layers=layers, backbone=backbone, pre_trained=False, num_neighbors=settings.neighbours
        )
        return load_package_weights(model, backbone)

    def finish_fit(self, model: PatchcoreModel, settings) -> None:
        """Keep a k-center-greedy coreset of ``coreset_ratio`` of the normal patches."""
        patches = sum(len(stored) for stored in model.embedding_store)
        # At least MIN_CORESET patches (all of them when fewer): a small train set or a
        # small input would otherwise leave an empty memory bank.
        ratio = max(settings.coreset_ratio, min(1.0, MIN_CORESET / max(patches, 1)))
        with seeded(settings.seed):  # the start point and the random projection
            model.subsample_embedding(ratio)
