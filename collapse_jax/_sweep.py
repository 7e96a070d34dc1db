"""Sweeps over frustration ratios x seeds: ``jit(vmap(single))``, sharded over every device.

One member is written once (e.g.
[`embedding_member`][collapse_jax.embedding_member]); the sweep flattens the
`frustration x seed` grid into one axis, pads it to a multiple of the device count,
lays it out over a one-axis `jax.sharding.Mesh` (``"sweep"``) and runs ``jit(vmap(member))``. Across
hosts, call [`initialize_distributed`][collapse_jax.initialize_distributed] (a thin wrapper of
``jax.distributed.initialize``) first on every process: the mesh then spans every device of every
host, each host builds only its own shards (``jax.make_array_from_callback``), and the results are
gathered with ``multihost_utils.process_allgather``.

A member whose solve fails keeps its diffrax result code (``result``, 0 = successful) and its
NaN-free neighbours finish: ``simulate`` runs with ``throw=False``.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._atomic import atomic_write
from ._data import (
    frustration_data,
    shared_from_frustration,
)

__all__ = [
    "SweepResult",
    "initialize_distributed",
    "save_sweep",
    "load_sweep",
    "collapse_time",
    "mean_over_seeds",
    "sweep_summary",
    "sweep_mesh",
    "frustration_sweep",
    "run_grid",
    "environment",
]


class SweepResult(NamedTuple):
    """Results of a sweep, as host numpy arrays with named axes.

    Attributes:
        frustration: `(F,)` ratios `phi`.
        seed: `(S,)` seeds of the initial states.
        t: `(T,)` save times.
        shared: `(F,)` the `M` used for each ratio (total shared weight).
        min_l2, accuracy, accuracy_all, loss: `(F, S, T)`.
        result: `(F, S)` diffrax result codes (0 = successful).
        steps: `(F, S)` solver steps taken (0 on the exact path).
        metadata: parameters, package versions, devices (JSON-serialisable dict).
    """

    frustration: np.ndarray
    seed: np.ndarray
    t: np.ndarray
    shared: np.ndarray
    min_l2: np.ndarray
    accuracy: np.ndarray
    accuracy_all: np.ndarray
    loss: np.ndarray
    result: np.ndarray
    steps: np.ndarray
    metadata: dict


_ARRAYS = (
    "frustration",
    "seed",
    "t",
    "shared",
    "min_l2",
    "accuracy",
    "accuracy_all",
    "loss",
    "result",
    "steps",
)


def initialize_distributed(**kwargs) -> None:
    """Start multi-host JAX (``jax.distributed.initialize(**kwargs)``) before any sweep.

    On managed clusters (SLURM, TPU pods) no arguments are needed; otherwise pass
    ``coordinator_address``, ``num_processes`` and ``process_id``. Every process then runs the
    same sweep call; each computes its own shards and receives the gathered result. Write
    files from one process only (``jax.process_index() == 0``), as ``collapse-jax`` does.

    Processes on CPUs exchange their shards through Gloo (selected here where this JAX does
    not select a CPU collectives implementation itself). A process that dies makes the others
    stop with JAX's "another task died" error once ``heartbeat_timeout_seconds`` (JAX's
    default: 100) have passed, instead of waiting for it forever; ``initialization_timeout``
    (default 300) bounds the wait for every process to join.
    """
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)


def sweep_mesh(devices=None) -> Mesh:
    """A one-axis mesh ``("sweep",)`` over ``devices`` (default: every device of every host)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), ("sweep",))


def _global_array(host: np.ndarray, sharding: NamedSharding):
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _run_sharded(member, batch, mesh: Mesh):
    """``jit(vmap(member))`` over the leading axis of ``batch``, sharded over ``mesh``."""
    leaves = jax.tree.leaves(batch)
    B = leaves[0].shape[0]
    n_dev = mesh.size
    padded = n_dev * math.ceil(B / n_dev)

    def pad(a):
        a = np.asarray(a)
        if padded == B:
            return a
        return np.concatenate([a, np.repeat(a[-1:], padded - B, axis=0)], axis=0)

    sharding = NamedSharding(mesh, PartitionSpec("sweep"))
    inputs = jax.tree.map(lambda a: _global_array(pad(a), sharding), batch)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(member)).lower(*inputs).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*inputs))
    run_seconds = time.perf_counter() - start
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        # every process receives every member (the padding dropped below)
        out = multihost_utils.process_allgather(out, tiled=True)
    out = jax.tree.map(lambda a: np.asarray(a)[:B], out)
    return out, {"compile_seconds": compile_seconds, "run_seconds": run_seconds}


def run_grid(member, axes: dict, *, devices=None) -> tuple[dict, dict]:
    """Any member over the product of any parameter axes, in one sharded ``jit(vmap)`` call.

    ``axes`` maps an argument name of ``member`` to that axis' values: a pytree whose leaves
    share a leading axis (an array of numbers, a batch of keys, a batched data set). The
    product is flattened in C order (the first axis outermost), padded to a multiple of the
    device count and laid out over the ``("sweep",)`` mesh; ``member(**values)`` returns a
    pytree (usually a dict) of arrays. Returns ``(out, timing)``: ``out`` with every leaf
    reshaped to `(len(axis_1), ..., len(axis_k), ...)`, ``timing`` the compile and run seconds
    and ``n_devices``.
    """
    if not axes:
        raise ValueError("axes must name at least one axis")
    names = list(axes)
    sizes = []
    for name in names:
        leaves = jax.tree.leaves(axes[name])
        if not leaves or np.ndim(leaves[0]) == 0:
            raise ValueError(f"axis {name!r} must have a leading axis, got {axes[name]!r}")
        sizes.append(int(np.shape(leaves[0])[0]))
    index = [a.ravel() for a in np.meshgrid(*(np.arange(n) for n in sizes), indexing="ij")]
    batch = tuple(
        jax.tree.map(lambda a, i=i: np.asarray(a)[i], axes[name])
        for name, i in zip(names, index, strict=True)
    )

    def flat_member(*values):
        return member(**dict(zip(names, values, strict=True)))

    mesh = sweep_mesh(devices)
    out, timing = _run_sharded(flat_member, batch, mesh)
    out = jax.tree.map(lambda a: a.reshape(*sizes, *a.shape[1:]), out)
    return out, {**timing, "n_devices": mesh.size}


def _grid(frustration, seeds, n_classes, per_class, rule, max_shared):
    """Validated ratios, seeds, the batched data and keys of a `frustration x seed` grid."""
    phis = np.atleast_1d(np.asarray(frustration, dtype=np.float64))
    if phis.ndim != 1 or phis.size == 0:
        raise ValueError(f"frustration must be a non-empty 1-d list of ratios, got {frustration!r}")
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        seeds = np.arange(seeds)
    seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64))
    if max_shared is None:
        # a ratio outside [0, 1) is reported by frustration_data below
        M = shared_from_frustration(n_classes, per_class, phis) if np.all(phis < 1) else 0.0
        max_shared = int(np.ceil(np.max(M))) if np.all(phis < 1) else 0
    data = frustration_data(n_classes, per_class, phis, max_shared=max_shared, rule=rule)
    keys = np.stack([np.asarray(jax.random.PRNGKey(int(s))) for s in seeds])
    return phis, seeds, data, max_shared, keys


def frustration_sweep(
    member, frustration, seeds, ts, *, n_classes, per_class, rule, max_shared, devices, metadata
) -> SweepResult:
    """Run ``member(data, key)`` over a `frustration x seed` grid in one sharded ``jit(vmap)``.

    ``member`` returns ``min_l2``, ``accuracy``, ``accuracy_all``, ``loss`` (each `(T,)` at
    ``ts``), ``result`` and ``steps``; the data of each ratio come from
    [`frustration_data`][collapse_jax.frustration_data] (``rule``, ``max_shared``: default
    the most any ratio needs) and the key of each seed is ``PRNGKey(seed)``. Any model's sweep
    is this call with its member (e.g.
    [`embedding_sweep`][collapse_jax.embedding_sweep]).
    """
    phis, seeds, data, max_shared, keys = _grid(
        frustration, seeds, n_classes, per_class, rule, max_shared
    )
    grid, timing = run_grid(
        lambda data, key: member(data, key), {"data": data, "key": keys}, devices=devices
    )
    F = phis.size
    metadata = {
        **metadata,
        "rule": rule,
        "n_classes": n_classes,
        "per_class": per_class,
        "max_shared": max_shared,
        **timing,
        "dims": {
            "min_l2": ["frustration", "seed", "t"],
            "result": ["frustration", "seed"],
            "steps": ["frustration", "seed"],
        },
        **environment(),
    }
    return SweepResult(
        frustration=phis,
        seed=seeds,
        t=np.asarray(ts),
        shared=np.asarray(data.shared_total, dtype=np.float64).reshape(F),
        min_l2=grid["min_l2"],
        accuracy=grid["accuracy"],
        accuracy_all=grid["accuracy_all"],
        loss=grid["loss"],
        result=grid["result"],
        steps=grid["steps"],
        metadata=metadata,
    )


def environment() -> dict:
    """Package versions and devices, for result files and benchmark records."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("collapse_jax", "jax", "jaxlib", "diffrax", "equinox", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "cpu_count": os.cpu_count(),
        "x64": bool(jax.config.jax_enable_x64),
    }


def save_sweep(result: SweepResult, path) -> str:
    """Write a self-describing ``.npz``: the named arrays plus ``metadata`` (a JSON string).

    npz + JSON: no dependency beyond numpy, readable anywhere, float64 stored bit-exactly.
    The file is written atomically (under a temporary name in the same folder, then renamed:
    an interrupted write never leaves a half-written file); the folder is created if needed.
    Returns the path written (``.npz`` appended if missing).
    """

    path = str(path)
    if not path.endswith(".npz"):
        path += ".npz"
    arrays = {k: np.asarray(getattr(result, k)) for k in _ARRAYS}
    with atomic_write(path, prefix=".sweep.", suffix=".npz") as f:
        np.savez(f, metadata=np.array(json.dumps(result.metadata)), **arrays)
    return path


def load_sweep(path) -> SweepResult:
    """Read a file written by [`save_sweep`][collapse_jax.save_sweep] back,
    bit-identically."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in _ARRAYS}
        metadata = json.loads(str(f["metadata"]))
    return SweepResult(**arrays, metadata=metadata)


def collapse_time(ts, min_l2, fraction: float = 1e-2) -> np.ndarray:
    """First save time at which MinL2 falls below ``fraction`` of its first value (NaN if never).

    Works on the last axis; leading axes (frustration, seed) are kept.
    """
    ts = np.asarray(ts)
    v = np.asarray(min_l2)
    below = v < fraction * v[..., :1]
    idx = np.argmax(below, axis=-1)
    return np.where(below.any(axis=-1), ts[idx], np.nan)


def mean_over_seeds(values) -> np.ndarray:
    """Mean over the seed axis (axis 1) of `(F, S)` values, ignoring NaN.

    A ratio where no seed has a finite value (e.g. no seed collapsed, see
    [`collapse_time`][collapse_jax.collapse_time]) stays NaN, without a warning.
    """
    a = np.asarray(values, dtype=np.float64)
    count = np.sum(np.isfinite(a), axis=1)
    total = np.nansum(a, axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def sweep_summary(result: SweepResult, rates: dict | None = None) -> dict:
    """Per ratio, averaged over seeds: what ``collapse-jax sweep`` reports of one sweep.

    Args:
        result: a [`SweepResult`][collapse_jax.SweepResult].
        rates: optional per-member fitted rates, `(F, S)` arrays ``slow_rate_fit`` and
            ``fast_rate_fit`` (as from [`fitted_rates`][collapse_jax.fitted_rates]).

    Returns:
        ``final_min_l2`` (the plain mean of the last MinL2), ``final_accuracy`` and
        ``collapse_time`` (means over the seeds with a value,
        [`mean_over_seeds`][collapse_jax.mean_over_seeds]), each `(F,)`, and
        ``failed_members``, the number of members whose solve failed; with ``rates`` also
        ``slow_rate_fit`` and ``fast_rate_fit``, NaN-ignoring means `(F,)`.
    """
    summary = {
        "final_min_l2": result.min_l2[..., -1].mean(axis=1),
        "final_accuracy": mean_over_seeds(result.accuracy[..., -1]),
        "collapse_time": mean_over_seeds(collapse_time(result.t, result.min_l2)),
        "failed_members": int(np.sum(result.result != 0)),
    }
    if rates is not None:
        summary["slow_rate_fit"] = mean_over_seeds(rates["slow_rate_fit"])
        summary["fast_rate_fit"] = mean_over_seeds(rates["fast_rate_fit"])
    return summary
