"""Size limits: what a run's main arrays need, known from its sizes before anything is allocated.

Every estimate counts the arrays that grow with the sizes asked for (states x save points x
members, dense Jacobians, sample-by-class score matrices) in bytes, times a small factor for
the copies that XLA and LAPACK make of them; fixed overheads (the interpreter, compiled code)
are not counted. ``memory_refusal`` compares an estimate with the memory this machine (and
its accelerator, where JAX reports one) has available. Caps (``MAX_*``) bound sizes that have
no sensible use whatever the memory.

Sizes are decimal (``1 GB = 10**9`` bytes); ``parse_size`` also reads ``GiB`` and friends.
"""

from __future__ import annotations

import math
import os
import re

MAX_POINTS = 1_000_000  # save points of one run
MAX_SHARED_ROWS = 1_000_000  # shared rows a frustration ratio may ask for
MAX_WINDOWS = 1_000_000  # windows of a self-consistent (dmft) solve

_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgtp]?)(i?)(b?)\s*$", re.I)


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional unit, ``64GB``, ``1.5 TB``, ``512MiB``,
    ``10G`` or a plain number of bytes. Raises ``ValueError`` otherwise."""
    m = _SIZE.match(str(text))
    if m is None or (m.group(3) and not m.group(2)):
        raise ValueError(f"not a size: {text!r}")
    number, prefix = float(m.group(1)), m.group(2).lower()
    scale = _BINARY[prefix] if m.group(3) else _UNITS[prefix]
    value = number * scale
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"not a positive size: {text!r}")
    return int(value)


def format_size(nbytes: float) -> str:
    """``nbytes`` in decimal units, three significant digits: ``2.4 TB``."""
    value = float(nbytes)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1000
    raise AssertionError  # unreachable


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """What a cgroup (v2 or v1) memory limit leaves, if one is set."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            if limit == "max" or int(limit) >= 2**60:
                return None
            with open(usage_file) as f:
                used = int(f.read().strip())
            return max(int(limit) - used, 0)
        except (OSError, ValueError):
            continue
    return None


def host_memory() -> int | None:
    """Bytes of memory available on this machine: ``MemAvailable`` (else the physical
    memory), lowered to what a cgroup limit leaves; ``None`` if unknown."""
    available = _meminfo_available()
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            available = None
    room = _cgroup_room()
    if room is not None:
        available = room if available is None else min(available, room)
    return available


def device_memory(devices: int | None = 1) -> int | None:
    """Free memory of the first ``devices`` (``None``: all) accelerators of this process
    together (``memory_stats``), or ``None`` on CPU or where JAX reports none."""
    import jax

    total = 0
    for device in jax.local_devices()[:devices]:
        if device.platform == "cpu":
            return None
        try:
            stats = device.memory_stats()
        except Exception:  # not every backend implements it
            return None
        if not stats or "bytes_limit" not in stats:
            return None
        total += int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return total or None


# --- estimates (bytes; ``itemsize`` 8 for float64) -------------------------------------------


def n_samples(classes: int, per_class: int, shared: int) -> int:
    """`N = K n + M` rows of the standard data set."""
    return classes * per_class + shared


def n_vars(model: str, classes: int, per_class: int, shared: int, dim: int) -> int:
    """Numbers in one state: `(N + K) d`, plus `d^2` for the projection model's `W`."""
    size = (n_samples(classes, per_class, shared) + classes) * dim
    return size + dim * dim if model == "projection" else size


def trajectory_bytes(model, classes, per_class, shared, dim, points, *, itemsize=8) -> int:
    """One member's saved trajectory and its per-point metrics: states and `N x K`
    sample-to-label scores at every save point, twice (the vmapped copies XLA makes)."""
    per_point = n_vars(model, classes, per_class, shared, dim)
    per_point += n_samples(classes, per_class, shared) * classes
    return 2 * points * per_point * itemsize


def jacobian_bytes(n: int, *, copies: int = 1, itemsize: int = 8) -> int:
    """``copies`` dense `n x n` matrices (a Jacobian and what its eigen-solve makes)."""
    return copies * n * n * itemsize


# the dense-Jacobian copies of each use: an implicit (Kvaerno5) step holds J and its LU
# factors; a spectrum holds J, numpy's copy for the eigen-solve and the sector projections;
# a certified steady state also the eigenvectors (complex) and their inverse
_IMPLICIT_COPIES = 2
_SPECTRUM_COPIES = 5
_STEADY_COPIES = 8


def simulate_bytes(model, classes, per_class, shared, dim, points, *, solver, path) -> int:
    """``collapse-jax simulate``: the trajectory (half as much again: the reports' copies),
    plus the implicit solver's Jacobian."""
    need = 3 * trajectory_bytes(model, classes, per_class, shared, dim, points) // 2
    implicit = solver == "kvaerno5" and not (model == "projection" and path == "reduced")
    if implicit:
        n = n_vars(model, classes, per_class, shared, dim)
        need += jacobian_bytes(n, copies=_IMPLICIT_COPIES)
    return need


def spectrum_bytes(model, classes, per_class, shared, dim, *, path="reduced") -> int:
    """``collapse-jax spectrum`` and ``fixed-point``: dense Jacobians of the whole state."""
    n = n_vars(model, classes, per_class, shared, dim)
    copies = _SPECTRUM_COPIES if model == "embedding" else _STEADY_COPIES
    if model == "projection" and path == "full":
        copies += _IMPLICIT_COPIES  # the integration to the steady state
    return jacobian_bytes(n, copies=copies) + trajectory_bytes(
        model, classes, per_class, shared, dim, 1
    )


def sweep_bytes(
    model, classes, per_class, max_shared, dim, points, members, *, method, path
) -> int:
    """``collapse-jax sweep``: every member at once (one ``jit(vmap)``), each with its
    trajectory; integrated members with an implicit solver also hold a Jacobian each."""
    need = trajectory_bytes(model, classes, per_class, max_shared, dim, points)
    integrated = (model == "embedding" and method == "integrate") or (
        model == "projection" and path == "full"
    )
    if integrated:
        n = n_vars(model, classes, per_class, max_shared, dim)
        need += jacobian_bytes(n, copies=_IMPLICIT_COPIES)
    return members * need


def teacher_student_bytes(input_dim, samples, student_dim, points, *, solver) -> int:
    """``collapse-jax teacher-student``: inputs `P x D`, moments `D x D`, the trajectory of
    `U (p x D)` and the `P x p` predictions at every save point, the row Hessian."""
    D, P, p = input_dim, samples, student_dim
    n = p * D + 2 * p + p * p
    need = P * D + 2 * D * D + 2 * points * (n + P * p) + (D + 2) ** 2
    if solver == "kvaerno5":
        need += _IMPLICIT_COPIES * n * n
    return 8 * need


def dmft_bytes(classes, per_class, shared, dim, windows) -> int:
    """``collapse-jax dmft``: the full start and one reduced state (means, covariances,
    `W`) a window, twice (the direct comparison)."""
    full = n_vars("projection", classes, per_class, shared, dim)
    reduced = (2 * classes + shared) * dim + (classes + 4) * dim * dim
    return 8 * (full + 2 * (windows + 1) * reduced)


class SizeError(ValueError):
    """A size beyond a cap (``MAX_*``): no sensible use, whatever the memory."""


def command_bytes(args) -> tuple[int, str, int | None]:
    """``(bytes, the size flags as typed, devices to count)`` of a ``collapse-jax`` command,
    from its parsed flags ``args`` (an ``argparse.Namespace``). Raises ``SizeError`` for a
    size beyond a cap."""
    points = getattr(args, "points", None)
    if points is not None and points > MAX_POINTS:
        raise SizeError(
            f"--points must be <= {MAX_POINTS} (more save times add nothing to a curve), "
            f"got {points}"
        )
    model = getattr(args, "model", "projection")
    sizes = [getattr(args, k, None) for k in ("classes", "per_class", "shared", "dim")]
    flags = "--classes {} --per-class {} --shared {} --dim {}".format(*sizes)
    command = args.command
    if command == "simulate":
        need = simulate_bytes(model, *sizes, points, solver=args.solver, path=args.path)
        return need, f"{flags} --points {points}", 1
    if command in ("spectrum", "fixed-point"):
        return spectrum_bytes(model, *sizes, path=args.path), flags, 1
    if command == "sweep":
        import jax

        phi = float(max(args.frustration))
        rows = math.ceil(phi * args.classes * args.per_class / (1.0 - phi))
        if rows > MAX_SHARED_ROWS:
            raise SizeError(
                f"--frustration {phi:g} asks for {rows} shared rows (at most "
                f"{MAX_SHARED_ROWS}): use ratios further from 1"
            )
        # the processes of a cluster share the members (it is joined before this check)
        members = math.ceil(len(args.frustration) * args.seeds / jax.process_count())
        sizes[2] = rows
        need = sweep_bytes(model, *sizes, points, members, method=args.method, path=args.path)
        flags = f"--classes {args.classes} --per-class {args.per_class} --dim {args.dim}"
        grid = f"{len(args.frustration)} ratios x --seeds {args.seeds}"
        return need, f"{flags} --points {points} ({grid})", None
    if command == "teacher-student":
        need = teacher_student_bytes(
            args.input_dim, args.samples, args.student_dim, points, solver=args.solver
        )
        flags = (
            f"--input-dim {args.input_dim} --samples {args.samples} --student-dim "
            f"{args.student_dim} --points {points}"
        )
        return need, flags, 1
    if command == "dmft":
        windows = args.t1 / args.window
        if not windows <= MAX_WINDOWS:
            raise SizeError(
                f"--t1 {args.t1:g} / --window {args.window:g} is {windows:.3g} windows (at "
                f"most {MAX_WINDOWS}): use a longer --window"
            )
        return dmft_bytes(*sizes, math.ceil(windows)), flags, 1
    raise ValueError(f"no size estimate for {command!r}")


def memory_refusal(need: int, *, limit: int | None = None, devices: int | None = 1) -> str | None:
    """Why a run estimated at ``need`` bytes cannot run here, or ``None`` if it fits.

    ``limit``: the memory to allow instead of what is detected (host and accelerator).
    """
    if limit is not None:
        if need > limit:
            return f"would need {format_size(need)}, more than the {format_size(limit)} allowed"
        return None
    host = host_memory()
    if host is not None and need > host:
        return f"would need {format_size(need)}, this machine has {format_size(host)} available"
    device = device_memory(devices)
    if device is not None and need > device:
        return f"would need {format_size(need)}, the accelerator has {format_size(device)} free"
    return None
