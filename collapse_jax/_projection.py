"""Simulating the projection model: the `N`-independent reduced path by default.

[`simulate_projection`][collapse_jax.simulate_projection] integrates the exact
order-parameter reduction ([`reduced_field`][collapse_jax.reduced_field], docs/theory.md §3) with
the deviation propagators that lift it back to every sample, and returns full
[`ProjectionState`][collapse_jax.ProjectionState] trajectories: callers see the same states as from
integrating all `N` samples (``path="full"``), at a cost that does not grow with `n`.

The reduced system is stiff in its fast variables only (`y` relaxes at rate `n + M`, `W` at
the eigenvalues of the moment matrix `S`, both proportional to the sample weight; the means,
covariances and propagators move at the rates of `W^T W`, docs/theory.md §6). The default solver is
therefore an IMEX Runge--Kutta method with the `(y, W)` block implicit and solved exactly
([`StageSolveKenCarp5`][collapse_jax.StageSolveKenCarp5], a `d x d` linear solve per stage,
see [`stage_solve`][collapse_jax.ReducedField.stage_solve]) and the slow block explicit. The
solver gets the field's partition ([`split`][collapse_jax.ReducedField.split],
[`merge`][collapse_jax.ReducedField.merge]), so each step combines the explicit stages on the
slow variables only and the implicit ones on `(y, W)` only (the same step, with a third fewer
operations; docs/performance.md).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ._imex import AbstractStageSolveARK, StageSolveKenCarp4, StageSolveKenCarp5
from ._integrate import DEFAULT_ATOL, DEFAULT_RTOL, default_solver, log_times, result_name, simulate
from ._reduced import lift_state, reduce_state, reduced_field, reduced_params
from ._types import ProjectionState

__all__ = [
    "ProjectionRun",
    "simulate_projection",
    "projection_run_report",
    "reduced_solver",
    "Path",
    "stop_gradient_zero_modes",
]

Path = Literal["reduced", "full"]


class ProjectionRun(NamedTuple):
    """A projection-model trajectory.

    Attributes:
        ts: save times.
        states: [`ProjectionState`][collapse_jax.ProjectionState] at ``ts`` (leading time axis),
            full sample embeddings on either path (``x`` is ``None`` with ``lift=False``).
        result: the diffrax result code.
        steps: solver steps taken.
        solution: the ``diffrax.Solution`` (``ys`` are reduced states on the reduced path).
    """

    ts: jax.Array
    states: ProjectionState
    result: diffrax.RESULTS
    steps: jax.Array
    solution: diffrax.Solution


def reduced_solver(field, rtol: float = DEFAULT_RTOL):
    """The IMEX solver of the reduced path for a
    [`ReducedField`][collapse_jax.ReducedField].

    KenCarp5 (order 5) by default; KenCarp4 for loose tolerances (`rtol >= 1e-7`), where it
    took the fewest seconds on the problem of docs/theory.md §6 (0.053 s vs 0.063 s per member at
    rtol 1e-6, ``benchmarks/bench_projection_reduced.py``).
    """
    cls = StageSolveKenCarp4 if rtol >= 1e-7 else StageSolveKenCarp5
    return cls(field.stage_solve, (field.split, field.merge))


def simulate_projection(
    data,
    state0: ProjectionState,
    *,
    stop_gradient: bool = False,
    path: Path = "reduced",
    ts=None,
    t0: float = 0.0,
    t1: float | None = None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_steps: int = 200_000,
    throw: bool = False,
    progress_meter: diffrax.AbstractProgressMeter | None = None,
    saveat: diffrax.SaveAt | None = None,
    event: diffrax.Event | None = None,
    lift: bool = True,
) -> ProjectionRun:
    """Integrate the projection model (docs/theory.md §3) from ``state0`` at ``t0``.

    Args:
        data: a [`StandardData`][collapse_jax.StandardData] (the reduction needs its group
            structure; other alignment matrices go through ``path="full"`` with
            [`simulate`][collapse_jax.simulate]).
        state0: a [`ProjectionState`][collapse_jax.ProjectionState].
        stop_gradient: the non-conservative field `F_sg` (else `-grad L_P`).
        path: ``"reduced"`` (default: order parameters plus propagators, cost independent
            of `n`) or ``"full"`` (every sample, the derived field of
            [`vector_field`][collapse_jax.vector_field] with the default implicit Kvaerno5).
        ts: save times (default 100 log-spaced in `[1e-2, t1]`).
        t1: end time when ``ts`` is not given (default 1e3).
        solver: default [`reduced_solver`][collapse_jax.reduced_solver] on the reduced
            path, Kvaerno5 on the full one. On the reduced path an IMEX ``StageSolveKenCarp*`` gets
            the split field; any other diffrax solver integrates the whole reduced field.
        rtol: relative tolerance, as for [`simulate`][collapse_jax.simulate].
        atol: absolute tolerance, as for [`simulate`][collapse_jax.simulate].
        max_steps: as for [`simulate`][collapse_jax.simulate].
        throw: as for [`simulate`][collapse_jax.simulate].
        progress_meter: as for [`simulate`][collapse_jax.simulate].
        saveat: as for [`simulate`][collapse_jax.simulate]; a ``saveat`` other than
            ``SaveAt(ts=...)`` and ``SaveAt(t1=True)`` is passed through (``states`` are then
            the lifted ``ys``).
        event: as for [`simulate`][collapse_jax.simulate].
        lift: reduced path only: integrate the deviation propagators and return every
            sample's embedding (default). ``False`` saves `2 d^2` variables (about 30% of
            the reduced state at `d = 8`) when only `y`, `W` (MinL2) are needed;
            ``states.x`` is then ``None``.
    """
    if path not in ("reduced", "full"):
        raise ValueError(f"path must be 'reduced' or 'full', got {path!r}")
    if ts is None:
        ts = log_times(1e-2, 1e3 if t1 is None else t1, 100)
    ts = jnp.asarray(ts)
    t1 = ts[-1] if t1 is None else t1
    kw = dict(
        ts=ts,
        t0=t0,
        t1=t1,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        throw=throw,
        progress_meter=progress_meter,
        saveat=saveat,
        event=event,
    )
    if path == "full":
        from ._fields import vector_field
        from ._losses import projection_loss

        field = vector_field(projection_loss, stop_gradient=stop_gradient)
        sol = simulate(field, state0, data.matrix(), solver=solver, **kw)
        return ProjectionRun(sol.ts, sol.ys, sol.result, sol.stats["num_steps"], sol)
    K, n, mask = data.n_classes, data.per_class, data.shared_mask
    x0 = state0.x
    z0 = reduce_state(x0, state0.y, state0.W, K, n, mask, lift=lift)
    field = reduced_field(stop_gradient=stop_gradient)
    solver = reduced_solver(field, rtol) if solver is None else solver
    if isinstance(solver, AbstractStageSolveARK):  # IMEX: slow part explicit, (y, W) implicit
        terms = diffrax.MultiTerm(diffrax.ODETerm(field.explicit), diffrax.ODETerm(field.implicit))
    else:  # any other diffrax solver integrates the whole reduced field
        terms = diffrax.ODETerm(field)
    controller = None
    if saveat is None:
        # step onto the save times: the IMEX dense output is 3rd order and not error
        # controlled; interpolated values were off by 1e-6 at rtol 1e-8 (K=2, n=3, t=0.1)
        controller = diffrax.ClipStepSizeController(
            diffrax.PIDController(rtol=rtol, atol=atol), step_ts=ts
        )
    sol = simulate(
        terms, z0, reduced_params(data), solver=solver, stepsize_controller=controller, **kw
    )
    x = jax.vmap(lambda z: lift_state(z, x0, K, n, mask))(sol.ys) if lift else None
    states = ProjectionState(x, sol.ys.y, sol.ys.W)
    return ProjectionRun(sol.ts, states, sol.result, sol.stats["num_steps"], sol)


def _rank(a, rel: float = 1e-8) -> int:
    """Numerical rank: singular values above `rel max(1, max|a|)`."""
    a = np.asarray(a)
    return int(np.linalg.matrix_rank(a, tol=rel * max(1.0, float(np.abs(a).max()))))


def stop_gradient_zero_modes(x, W, A=None) -> dict:
    """Predicted zero modes at a stop-gradient fixed point (docs/theory.md §3, P3).

    The fixed points form a manifold of dimension `d^2 + (N_a - rank X_a)(d - rank W)` over
    the `N_a` active samples `X_a`, plus `d` per inactive sample (it feels no force). With the
    alignment matrix ``A`` the active samples are its rows with a positive entry; without it
    every row of ``x`` counts as active. Ranks are numerical (relative tolerance `1e-8`).
    Returns ``count``, ``rank_x``, ``rank_w``, ``active`` (the number of active samples).
    """
    x, W = np.asarray(x), np.asarray(W)
    N, d = x.shape
    active = np.ones(N, bool) if A is None else np.max(np.asarray(A), axis=1) > 0
    rank_x, rank_w = _rank(x[active]), _rank(W)
    n_act = int(active.sum())
    count = d * d + (n_act - rank_x) * (d - rank_w) + (N - n_act) * d
    return {"count": count, "rank_x": rank_x, "rank_w": rank_w, "active": n_act}


def _final_norm(states) -> float:
    """The Euclidean norm of a trajectory's last state (every leaf of the pytree)."""
    return float(np.sqrt(sum(np.sum(np.asarray(a)[-1] ** 2) for a in states)))


def projection_run_report(
    data,
    state0: ProjectionState,
    ts,
    *,
    stop_gradient: bool = False,
    path: Path = "reduced",
    solver: Literal["kencarp", "kvaerno5", "tsit5"] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 200_000,
    progress_meter: diffrax.AbstractProgressMeter | None = None,
) -> dict:
    """Integrate the projection model from ``state0`` and report its metrics at ``ts``.

    What ``collapse-jax simulate --model projection`` reports: one
    [`simulate_projection`][collapse_jax.simulate_projection] run and the
    [`projection_metrics`][collapse_jax.projection_metrics] of every saved state.

    Args:
        data: a [`StandardData`][collapse_jax.StandardData].
        state0: the start ([`init_projection_state`][collapse_jax.init_projection_state]).
        ts: save times.
        stop_gradient, path, max_steps, progress_meter: as in
            [`simulate_projection`][collapse_jax.simulate_projection].
        solver: ``"kencarp"`` (the reduced path's IMEX default), ``"kvaerno5"``
            ([`default_solver`][collapse_jax.default_solver]) or ``"tsit5"``; default
            ``"kencarp"`` on the reduced path, ``"kvaerno5"`` on the full one.
        rtol, atol: tolerances (default [`DEFAULT_RTOL`][collapse_jax.DEFAULT_RTOL],
            [`DEFAULT_ATOL`][collapse_jax.DEFAULT_ATOL]).

    Returns:
        ``t``, ``min_l2``, ``loss``, ``accuracy``, ``accuracy_all`` (numpy, `(T,)`),
        ``final_state_norm``, ``solver``, ``result`` (its name), ``steps``, ``path``, ``rtol``,
        ``atol``, ``seconds`` (integration and metrics), ``slow_rate_fit``, ``final_min_l2``,
        ``final_w_eigenvalues_abs`` (sorted `|eig W|` at the last time) and ``final_y``, the
        label embeddings `(K, d)` at the last time.
    """
    import time

    from ._metrics import _metrics_along, fit_slow_rate
    from ._models.projection import projection_metrics

    if solver is None:
        solver = "kencarp" if path == "reduced" else "kvaerno5"
    rtol = DEFAULT_RTOL if rtol is None else rtol
    atol = DEFAULT_ATOL if atol is None else atol
    solvers = {
        "kvaerno5": lambda: default_solver(rtol, atol),
        "kencarp": lambda: None,  # the reduced path's default IMEX solver
        "tsit5": diffrax.Tsit5,
    }
    if solver not in solvers:
        raise ValueError(f"solver must be one of {sorted(solvers)}, got {solver!r}")
    start = time.perf_counter()
    run = simulate_projection(
        data,
        state0,
        stop_gradient=stop_gradient,
        path=path,
        ts=ts,
        solver=solvers[solver](),
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        progress_meter=progress_meter,
    )
    metrics = _metrics_along(projection_metrics, run.states, data)
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    seconds = time.perf_counter() - start
    return {
        "t": np.asarray(ts),
        "min_l2": metrics["min_l2"],
        "loss": metrics["loss"],
        "accuracy": metrics["accuracy"],
        "accuracy_all": metrics["accuracy_all"],
        "final_state_norm": _final_norm(run.states),
        "solver": solver,
        "result": result_name(run.result),
        "steps": int(run.steps),
        "path": path,
        "rtol": rtol,
        "atol": atol,
        "seconds": seconds,
        "slow_rate_fit": fit_slow_rate(ts, metrics["min_l2"]),
        "final_min_l2": float(metrics["min_l2"][-1]),
        "final_w_eigenvalues_abs": _w_eigenvalues_abs(run.states.W[-1]),
        "final_y": run.states.y[-1],
    }


def _w_eigenvalues_abs(W) -> np.ndarray:
    """`|eig W|` sorted, host float64; NaN entries where `W` is not finite (a failed solve)."""
    W = np.asarray(W, dtype=np.float64)
    if not np.all(np.isfinite(W)):
        return np.full(W.shape[0], np.nan)
    return np.sort(np.abs(np.linalg.eigvals(W)))
