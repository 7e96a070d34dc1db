"""Warm starts: JAX's persistent compilation cache, and the compile-time clock.

Most of a short run of this package is XLA compilation (a diffrax solve of the embedding model
compiles in seconds and runs in one). JAX can store every compiled executable on disk, keyed by
the program, the devices, the compiler options and the jax/jaxlib versions, and load it in a
later process instead of compiling again:
[`enable_compilation_cache`][collapse_jax.enable_compilation_cache] turns that on for a folder.
The ``collapse-jax`` command turns it on by default (``--no-cache``, ``--cache-dir DIR``);
``import collapse_jax`` does not, since the setting is global to JAX (the other JAX code of the
process would write its executables there too).

The folder: ``COLLAPSE_JAX_CACHE_DIR`` if set, else the folder JAX was already given
(``JAX_COMPILATION_CACHE_DIR``), else ``$XDG_CACHE_HOME/collapse_jax/jax``, else
``~/.cache/collapse_jax/jax``. ``COLLAPSE_JAX_CACHE=0`` (or ``off``, ``false``, ``no``)
turns the cache off everywhere. A folder that cannot be created or written is reported once
(a ``RuntimeWarning``) and the process runs without the cache: it only ever saves time, it never
changes a result.

JAX does not store an executable that calls back into Python (a progress bar, ``jax.debug``, or
a runtime check of ``equinox.error_if``, e.g. diffrax's checks of the save times); those are
compiled in every process. ``compile_clock`` measures where the time of a run goes: tracing,
XLA compilation (or loading from the cache) and the rest.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import warnings
from pathlib import Path

__all__ = ["enable_compilation_cache"]

ENV_DIR = "COLLAPSE_JAX_CACHE_DIR"
ENV_SWITCH = "COLLAPSE_JAX_CACHE"
_OFF = ("0", "off", "false", "no")
_WARNED: set[str] = set()

# JAX's configuration keys this module sets (and ``_cli_cache`` restores)
_KEYS = (
    "jax_enable_compilation_cache",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def _env_disabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() in _OFF


def _default_dir() -> Path:
    """``$XDG_CACHE_HOME/collapse_jax/jax`` (an absolute ``XDG_CACHE_HOME`` only, as the XDG
    specification asks), else ``~/.cache/collapse_jax/jax``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "collapse_jax" / "jax"


def _resolve_dir(path=None) -> Path:
    """``path``, else ``COLLAPSE_JAX_CACHE_DIR``, else JAX's own setting, else the default."""
    if path is None:
        path = os.environ.get(ENV_DIR) or None
    if path is None:
        import jax

        path = jax.config.jax_compilation_cache_dir or _default_dir()
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot hold the cache (``None`` when it can): create it, then write and
    delete a probe file."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".collapse-jax-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def _reset_jax_cache() -> None:
    """JAX opens its cache once per process, at the first compilation: make it open again
    with the current settings."""
    try:
        from jax.experimental.compilation_cache import compilation_cache as cc

        cc.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - very old jax
        pass


def enable_compilation_cache(path=None, *, min_compile_time_secs: float = 0.0) -> str | None:
    """Store compiled executables in ``path`` and load them in later processes (warm starts).

    Sets JAX's ``jax_compilation_cache_dir``, ``jax_persistent_cache_min_compile_time_secs``
    (default 0: every executable is stored; a run of this package compiles many small ones,
    and loading one takes a fraction of compiling it) and
    ``jax_persistent_cache_min_entry_size_bytes`` (0) for the whole process. Call it before the
    first computation you want stored, e.g. at the top of a notebook; the ``collapse-jax``
    command does it for you. ``import collapse_jax`` does not, since the setting is global to
    JAX.

    Executables that call back into Python are never stored (JAX's rule): those with a
    progress bar or ``jax.debug`` output, and those with a runtime check of
    ``equinox.error_if`` (diffrax checks the save times that way). Setting the environment
    variable ``EQX_ON_ERROR=nan`` before importing equinox turns such checks into NaN results,
    so that diffrax solves are stored too, at the price of a NaN instead of an error message
    when a check fails.

    Args:
        path: the folder (created if needed). Default: ``COLLAPSE_JAX_CACHE_DIR`` if set, else
            the folder JAX was already given (``JAX_COMPILATION_CACHE_DIR``), else
            ``$XDG_CACHE_HOME/collapse_jax/jax``, else ``~/.cache/collapse_jax/jax``.
        min_compile_time_secs: store only executables that took at least this long to compile.

    Returns:
        The folder in use, or ``None`` when the cache stays off: ``COLLAPSE_JAX_CACHE`` is
        ``0``/``off``/``false``/``no``, or the folder cannot be created or written (then a
        ``RuntimeWarning`` says why, once per folder, and nothing else changes).

    !!! warning
        JAX trusts what it loads from the folder: do not point it at a folder others can write.
    """
    if _env_disabled():
        return None
    folder, problem = _enable(path, min_compile_time_secs)
    if problem is not None and folder not in _WARNED:
        _WARNED.add(folder)
        warnings.warn(
            f"collapse_jax: the compilation cache folder {folder} cannot be written "
            f"({problem}); running without a persistent compilation cache (set {ENV_DIR} to "
            f"another folder, or {ENV_SWITCH}=0 to silence this)",
            RuntimeWarning,
            stacklevel=2,
        )
    return None if problem is not None else folder


def _enable(path, min_compile_time_secs: float = 0.0) -> tuple[str, str | None]:
    """Point JAX's cache at ``path`` (resolved by ``_resolve_dir``); returns the folder and
    why it cannot be used (``None`` when it is in use; JAX's settings are then unchanged)."""
    import jax

    folder = _resolve_dir(path)
    problem = _unwritable(folder)
    if problem is not None:
        return str(folder), problem
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _reset_jax_cache()
    return str(folder), None


def _disable() -> None:
    """No persistent cache for the rest of the process (neither read nor written)."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    _reset_jax_cache()


def _active_dir() -> str | None:
    """The folder JAX stores executables in now, or ``None``."""
    import jax

    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir or None


# --- equinox's runtime checks ---------------------------------------------------------------


def _equinox_checks_as_nan():
    """Compile ``equinox.error_if`` checks as NaN results instead of host callbacks (what
    ``EQX_ON_ERROR=nan`` does, for a process that imported equinox already); returns the
    function that undoes it. Nothing changes when the user set ``EQX_ON_ERROR``."""
    if "EQX_ON_ERROR" in os.environ:
        return lambda: None
    try:
        from equinox import _errors
    except ImportError:  # pragma: no cover - equinox is a dependency
        return lambda: None
    before = getattr(_errors, "EQX_ON_ERROR", None)
    if before != "raise":  # another equinox, or another setting: leave it
        return lambda: None
    _errors.EQX_ON_ERROR = "nan"

    def restore():
        _errors.EQX_ON_ERROR = before

    return restore


# --- the command line -----------------------------------------------------------------------


def _cli_cache(no_cache: bool, cache_dir, *, program: bool, warn):
    """Set up the cache for one ``collapse-jax`` run; returns ``(folder or None, restore)``.

    ``no_cache`` (``--no-cache``) or ``COLLAPSE_JAX_CACHE=0``: no cache, JAX's own setting
    included. Otherwise [`enable_compilation_cache`][collapse_jax.enable_compilation_cache]
    on ``cache_dir`` (``--cache-dir``, else its default); a folder that cannot be written is
    reported through ``warn(message)`` and the run goes on without the cache. When ``program``
    (``main`` runs as the program, not called from a longer-lived process) the run's
    ``equinox.error_if`` checks compile to NaN results, so that its diffrax solves are stored
    too: the command checks its inputs before it computes, so these checks cannot fire in it.
    ``restore()`` puts JAX's settings (and equinox's) back as they were.
    """
    import jax

    before = {k: getattr(jax.config, k) for k in _KEYS}
    undo_eqx = lambda: None  # noqa: E731

    def restore():
        undo_eqx()
        for k, v in before.items():
            jax.config.update(k, v)
        _reset_jax_cache()

    if no_cache or _env_disabled():
        _disable()
        return None, restore
    folder, problem = _enable(cache_dir)
    if problem is not None:
        warn(
            f"the compilation cache folder {folder} cannot be written ({problem}); running "
            "without it (choose another with --cache-dir DIR, or turn it off with --no-cache)"
        )
        _disable()
        return None, restore
    if program:
        undo_eqx = _equinox_checks_as_nan()
    return folder, restore


# --- where the time goes --------------------------------------------------------------------

# JAX's monitoring events (``jax.monitoring``): durations of tracing to a jaxpr, of lowering
# it to an MLIR module, and of XLA's compilation (or the load from the persistent cache, which
# happens inside the same step); counts of cache hits and misses
_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_COMPILE = "/jax/core/compile/backend_compile_duration"
_HITS = "/jax/compilation_cache/cache_hits"
_MISSES = "/jax/compilation_cache/cache_misses"


class CompileClock:
    """Accumulated compile-side seconds and cache counts (see ``compile_clock``)."""

    def __init__(self):
        self.trace = 0.0  # tracing to jaxprs and lowering them to MLIR
        self.compile = 0.0  # XLA compilation, or loading the executable from the cache
        self.hits = 0
        self.misses = 0
        self._stopped = False
        self._lock = threading.Lock()

    def _duration(self, event, seconds, **_):
        if self._stopped:
            return
        with self._lock:
            if event == _COMPILE:
                self.compile += seconds
            elif event in (_TRACE, _LOWER):
                self.trace += seconds

    def _count(self, event, **_):
        if self._stopped:
            return
        with self._lock:
            if event == _HITS:
                self.hits += 1
            elif event == _MISSES:
                self.misses += 1

    def snapshot(self) -> dict:
        with self._lock:
            return dict(trace=self.trace, compile=self.compile, hits=self.hits, misses=self.misses)


@contextlib.contextmanager
def compile_clock():
    """``with compile_clock() as clock:`` adds up, while the block runs (in any thread), the
    seconds JAX spends tracing and lowering (``clock.trace``), compiling with XLA or loading
    from the persistent cache (``clock.compile``), and the cache's hits and misses."""
    from jax import monitoring

    clock = CompileClock()
    monitoring.register_event_duration_secs_listener(clock._duration)
    monitoring.register_event_listener(clock._count)
    try:
        yield clock
    finally:
        clock._stopped = True  # a jax without the unregister functions keeps calling them
        for name, listener in (
            ("unregister_event_duration_listener", clock._duration),
            ("unregister_event_listener", clock._count),
        ):
            with contextlib.suppress(AttributeError, AssertionError, ValueError):
                getattr(monitoring, name)(listener)
