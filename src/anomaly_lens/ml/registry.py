"""A named registry of builders, timm-style: register with a decorator, look up by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry(dict[str, Callable[..., Any]]):
    """Maps names to classes or builder functions of one kind (``fusion``, ``loss``, ...)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable:
        """Decorator adding a class or function under ``name``."""

        def add(builder):
            self[name] = builder
            return builder

        return add

    def lookup(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name``; the error lists what is registered."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {sorted(self)}")
        return self[name]
