"""Old import paths of moved public names, kept for one release with a DeprecationWarning."""

from __future__ import annotations

import importlib
import warnings


def moved(module: str, names: dict[str, str]):
    """A module ``__getattr__`` serving ``names`` (name -> new module) from their new modules.

    Each access warns with a ``DeprecationWarning`` naming the new path and returns the very
    object the new module holds.
    """

    def __getattr__(name: str):
        if name in names:
            new = names[name]
            warnings.warn(
                f"{module}.{name} moved to {new}.{name}; the old path is deprecated and will "
                "be removed in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(new), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
