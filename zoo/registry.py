"""A small name -> builder registry shared by models, tasks and tuners.

Shaped after timm's model registry: a decorator keyed by the function's name, fnmatch listing,
and an unknown name that says what was meant and what exists.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable


class UnknownNameError(KeyError):
    """Raised for a name the registry does not hold; the message suggests close names."""

    def __init__(self, kind: str, name: str, available: list[str]):
        self.kind, self.name, self.available = kind, name, available
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
        self.message = f"Unknown {kind} {name!r}.{hint} Available: {', '.join(available)}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would print the message inside quotes
        return self.message


class Registry:
    """Maps names to builder functions.

    Args:
        kind: what the registry holds ("model", "task", ...), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, fn: Callable | None = None, *, name: str | None = None):
        """Decorator that registers `fn` under its own name (or `name`). Duplicates are an error."""

        def add(f: Callable) -> Callable:
            key = name or f.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = f
            return f

        return add(fn) if fn is not None else add

    def list(self, pattern: str | None = None) -> list[str]:
        """Sorted names, filtered by an fnmatch glob or a comma-separated list of globs."""
        names = sorted(self._entries)
        if not pattern:
            return names
        globs = [p.strip() for p in pattern.split(",") if p.strip()]
        return [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]

    def get(self, name: str) -> Callable:
        """The builder registered as `name`; raises `UnknownNameError` otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.list()) from None

    def describe(self, name: str) -> str:
        """The first line of the builder's docstring."""
        doc = (self.get(name).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
