"""Name -> factory registries, so configs and the CLI can name every component by string.

Each layer owns one `Registry` instance (datasets, models, methods, attacks, defenses). The
registries are the only module-level state in robustlab: they are filled by the `@register`
decorators when their package is imported, and are never mutated afterwards.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any


class RegistryError(KeyError):
    """Unknown or duplicate name in a registry."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class Registry:
    """A mapping from names to factories (classes or functions).

    >>> ATTACKS = Registry("attack")
    >>> @ATTACKS.register("fgsm")
    ... class FGSM: ...
    >>> ATTACKS.create("fgsm")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise RegistryError(
                    f"duplicate {self.kind} name {name!r}: already registered by "
                    f"{_describe(self._entries[name])}, now again by {_describe(factory)}"
                )
            self._entries[name] = factory
            if isinstance(factory, type):
                factory.name = name  # the registered name is the class's only name
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), self._entries, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.list())}"
            ) from None

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def list(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _describe(factory: Callable[..., Any]) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"


DATASETS = Registry("dataset")
MODELS = Registry("model")
METHODS = Registry("training method")
ATTACKS = Registry("attack")
DEFENSES = Registry("defense")
