"""Old import paths, kept for one release with a ``DeprecationWarning``.

Until version 0.2 the library lived in public modules (``collapse_jax.exact``,
``collapse_jax.sweep``, ``collapse_jax.models.projection``, ...). Every public name is now
exported by ``collapse_jax`` itself and the modules are private (``collapse_jax._exact``, ...),
as diffrax and equinox lay out theirs. The old module paths still import: a finder on
``sys.meta_path`` serves each of them as a thin module whose attributes come from the new
place, and each attribute access warns with the new path, e.g.
``collapse_jax.sweep.load_sweep moved to collapse_jax.load_sweep``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: old module path (after ``collapse_jax.``) -> the private module that holds its code now
OLD_MODULES = {
    **{
        name: "_" + name
        for name in (
            "comparison",
            "data",
            "diagnostics",
            "dmft",
            "exact",
            "fields",
            "imex",
            "integrate",
            "mechanisms",
            "metrics",
            "plots",
            "projection",
            "reduced",
            "spectral",
            "steady",
            "sweep",
            "losses",
            "models",
        )
    },
    "teacher_student": "_models.teacher_student",
    **{
        f"losses.{sub}": f"_losses.{sub}"
        for sub in ("embedding", "mechanisms", "projection", "teacher_student")
    },
    **{
        f"models.{sub}": f"_models.{sub}"
        for sub in ("embedding", "mechanisms", "projection", "teacher_student")
    },
}
_PACKAGES = ("losses", "models")


class OldPath(types.ModuleType):
    """A deprecated module path: attribute access warns and returns the object's new home."""

    def __init__(self, old: str, new: str):
        super().__init__(old)
        self.__new_module = new

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        private = importlib.import_module(self.__new_module)
        top = importlib.import_module("collapse_jax")
        public = getattr(top, "__all__", ())
        if name in vars(private):
            value = vars(private)[name]
        elif name in public:
            value = getattr(top, name)
        else:  # the private module's own deprecations, or AttributeError
            return getattr(private, name)
        if name in public and getattr(top, name) is value:
            new = f"collapse_jax.{name}"
        else:
            new = f"{self.__new_module}.{name} (private: not a stable API)"
        warnings.warn(
            f"{self.__name__}.{name} moved to {new}; the old path is deprecated and will be "
            "removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    def __dir__(self):
        return sorted(set(dir(importlib.import_module(self.__new_module))))


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        prefix = "collapse_jax."
        if not fullname.startswith(prefix) or fullname[len(prefix) :] not in OLD_MODULES:
            return None
        rest = fullname[len(prefix) :]
        return importlib.util.spec_from_loader(fullname, self, is_package=rest in _PACKAGES)

    def create_module(self, spec):
        rest = spec.name[len("collapse_jax.") :]
        return OldPath(spec.name, "collapse_jax." + OLD_MODULES[rest])

    def exec_module(self, module):
        pass


def install() -> None:
    """Put the finder of old paths on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _OldPathFinder) for f in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())


def old_module(name: str):
    """``collapse_jax.<name>`` for an old top-level module name (package ``__getattr__``)."""
    if name in OLD_MODULES and "." not in name:
        return importlib.import_module(f"collapse_jax.{name}")
    raise AttributeError(f"module 'collapse_jax' has no attribute {name!r}")
