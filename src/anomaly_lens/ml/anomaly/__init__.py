"""Anomaly detection learnt from normal images only (anomalib's PatchCore and PaDiM on the
installed ImageNet weights), one module per method, registered by name
(``register_method``): the names ``anomaly.method`` accepts (``METHODS``). Every module of
this package that defines a method is imported here, so adding one is one file (and its
test). No Kedro."""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


class Method:
    """One way to learn normality from patch features: the anomalib torch model it builds,
    and what ends its fit once every normal image has gone through it in train mode."""

    def create(self, backbone: str, layers: list[str], settings: Any) -> torch.nn.Module:
        raise NotImplementedError

    def finish_fit(self, model: torch.nn.Module, settings: Any) -> None:
        raise NotImplementedError


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the global generators anomalib draws from (torch, NumPy through scikit-learn's
    random projection, Python's ``random``) for the block, then put them back as they were."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


ANOMALY_METHODS: dict[str, Method] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: the method becomes available as ``anomaly.method: <name>``."""

    def register(cls: type[Method]) -> type[Method]:
        ANOMALY_METHODS[name] = cls()
        return cls

    return register


def create_method(name: str) -> Method:
    """The registered method ``name``; the error lists the registered ones."""
    if name not in ANOMALY_METHODS:
        raise ValueError(f"unknown anomaly method {name!r}; registered: {METHODS}")
    return ANOMALY_METHODS[name]


# modules of this package that are not methods
_SUPPORT = {"detector", "evaluation", "fitting", "gate", "settings", "weights"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT:
        importlib.import_module(f"{__name__}.{_module.name}")

METHODS = tuple(sorted(ANOMALY_METHODS))  # the names ``anomaly.method`` accepts
