"""Steady states of a gradient-flow field: integrate, polish, classify (docs/theory.md §3).

[`find_steady_state`][collapse_jax.steady.find_steady_state] never reports a slow transient as
a fixed point. It

1. integrates with the implicit default solver until ``diffrax.steady_state_event`` fires
   (`rms(F) <= event_tol`) or the horizon is reached;
2. polishes the end state with an ``optimistix`` Newton root find on the field whose linear
   solves go through ``lineax.SVD`` (a pseudo-inverse Newton: the Jacobian is singular along
   the zero modes of continuous symmetries, and the pseudo-inverse step moves only
   orthogonally to them), and records the residual `|F|_2` before and after;
3. accepts a fixed point only if the residual before the polish is at most ``accept_tol``,
   after it at most ``residual_tol``, the polish moved the state by at most ``move_tol``
   (relative), and no Jacobian eigenvalue has real part above ``growth_tol``.

A state that fails the residual tests is integrated further (horizons `x10` up to
``t_max``). A state that passes them but has an unstable eigenvalue is a saddle (docs/theory.md §3:
saddles with long plateaus exist): the finder nudges it by ``escape`` (relative) along the
most unstable eigenvector and keeps integrating. Whatever is left at ``t_max`` is reported as
``"slow-transient"`` or ``"saddle"``, never as ``"fixed-point"``.

[`projection_fixed_point`][collapse_jax.steady.projection_fixed_point] adds the projection-model
analysis (`W` spectrum, `Omega`, bias sectors, branch) and
[`classify_starts`][collapse_jax.steady.classify_starts] counts branches over many starts (P2).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
from jax.flatten_util import ravel_pytree

from .integrate import result_name, simulate
from .spectral import (
    asymmetry_norm,
    bias_sectors,
    eigenvalues,
    jacobian,
    label_span_spectrum,
    omega_max_eigenvalue,
)

__all__ = [
    "SteadyState",
    "find_steady_state",
    "polish",
    "residual_norm",
    "projection_fixed_point",
    "classify_starts",
    "BRANCHES",
]

#: Branch names of :func:`projection_fixed_point` (P1/P2 of docs/theory.md §3).
BRANCHES = ("separated", "bias-in-kernel", "collapsed", "other", "saddle", "slow-transient")


class SteadyState(NamedTuple):
    """Outcome of [`find_steady_state`][collapse_jax.steady.find_steady_state] (host values).

    Attributes:
        state: the polished state if ``status == "fixed-point"``, else the integrated one.
        integrated: the state the integration ended at (before the polish).
        status: ``"fixed-point"`` (stable, residual-tested), ``"saddle"`` (residual-tested
            but an eigenvalue has real part above ``growth_tol``) or ``"slow-transient"``.
        t: time reached by the integration.
        residual_before: `|F|_2` at ``integrated``.
        residual_after: `|F|_2` after the polish.
        polish_move: `|z_polished - z_integrated|_2 / (1 + |z|_2)`.
        eigenvalues: Jacobian eigenvalues at ``state`` (sorted by real part).
        max_real: their largest real part.
        zero_modes: number of eigenvalues with `|lambda| <= zero_tol`.
        jacobian: the Jacobian at ``state`` (autodiff of the field).
        steps: total solver steps; ``segments``: integration segments; ``escapes``: saddle
            nudges; ``result``: the last diffrax result name.
    """

    state: Any
    integrated: Any
    status: str
    t: float
    residual_before: float
    residual_after: float
    polish_move: float
    eigenvalues: np.ndarray
    max_real: float
    zero_modes: int
    jacobian: np.ndarray
    steps: int
    segments: int
    escapes: int
    result: str


def residual_norm(field, state, args) -> float:
    """`|F(z)|_2` over the flattened state."""
    return float(_residual_jit(field, state, args))


@eqx.filter_jit
def _residual_jit(field, state, args):
    return jnp.linalg.norm(ravel_pytree(field(0.0, state, args))[0])


@functools.lru_cache(maxsize=16)
def _steady_event(event_tol: float) -> diffrax.Event:
    # One Event object per tolerance: a fresh closure would make diffrax recompile every call.
    return diffrax.Event(diffrax.steady_state_event(rtol=0.0, atol=event_tol))


def polish(field, state, args, *, rtol=1e-13, atol=1e-14, max_steps=30, rcond=1e-10):
    """Newton root find of `F(z) = 0` with pseudo-inverse steps (``lineax.SVD``).

    Singular values below ``rcond`` times the largest are dropped, so the zero modes of
    continuous symmetries (a manifold of fixed points) do not blow the step up; the step is
    the minimum-norm one, orthogonal to that manifold. Returns ``(state, optx.Solution)``.
    """
    return _polish_jit(field, state, args, rtol, atol, max_steps, rcond)


@eqx.filter_jit
def _polish_jit(field, state, args, rtol, atol, max_steps, rcond):
    flat, unravel = ravel_pytree(state)

    def fn(v, a):
        return ravel_pytree(field(0.0, unravel(v), a))[0]

    solver = optx.Newton(rtol=rtol, atol=atol, linear_solver=lx.SVD(rcond=rcond))
    sol = optx.root_find(fn, solver, flat, args, max_steps=max_steps, throw=False)
    return unravel(sol.value), sol


def find_steady_state(
    field,
    state0,
    args,
    *,
    t1: float = 1e3,
    t_max: float = 1e5,
    event_tol: float = 1e-11,
    accept_tol: float = 1e-8,
    residual_tol: float = 1e-10,
    move_tol: float = 1e-6,
    growth_tol: float = 1e-7,
    zero_tol: float = 1e-7,
    escape: float = 1e-6,
    max_escapes: int = 3,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 200_000,
    progress_meter: diffrax.AbstractProgressMeter | None = None,
    advance=None,
) -> SteadyState:
    """Integrate to a steady state, polish it and classify it (see the module docstring).

    Args:
        field: a diffrax-shaped field (e.g. ``vector_field(projection_loss, ...)``).
        state0: initial state; ``args``: the field's arguments (the alignment matrix).
        t1: first horizon; later ones grow `x10` up to ``t_max``.
        event_tol: the steady-state event fires at `rms(F) <= event_tol`.
        accept_tol: residual before the polish allowed for a fixed point.
        residual_tol: residual after the polish allowed for a fixed point.
        move_tol: polish move allowed for a fixed point.
        growth_tol: largest real part of a Jacobian eigenvalue allowed at a fixed point.
        zero_tol: eigenvalues with `|lambda| <= zero_tol` count as zero modes.
        escape: relative nudge along the unstable eigenvector at a saddle.
        max_escapes: how many nudges to try.
        rtol: passed to [`simulate`][collapse_jax.integrate.simulate] (implicit Kvaerno5: the
            `W` block is stiff, docs/theory.md §6). The ``rtol``/``atol`` defaults are looser
            than the trajectory defaults: the end state is polished anyway, and at 1e-10 the
            stop-gradient runs took 2-3x more steps (K=3, n=4, M=2, d=4).
        atol: passed to [`simulate`][collapse_jax.integrate.simulate] (see ``rtol``).
        max_steps: passed to [`simulate`][collapse_jax.integrate.simulate].
        progress_meter: passed to [`simulate`][collapse_jax.integrate.simulate].
        advance: optional ``advance(z, t0, t1, event) -> (z1, t_reached, steps, result)``
            replacing the integration of ``field`` (e.g. the projection model's reduced path,
            [`projection_fixed_point`][collapse_jax.steady.projection_fixed_point]); the polish and
            the Jacobian always use ``field``.

    Returns:
        A [`SteadyState`][collapse_jax.steady.SteadyState].
    """
    if not 0 < t1 <= t_max:
        raise ValueError(f"need 0 < t1 <= t_max, got t1={t1}, t_max={t_max}")
    event = _steady_event(float(event_tol))
    z, t, horizon = state0, 0.0, float(t1)
    steps = segments = escapes = 0
    if advance is None:

        def advance(z, t0, t1, event):
            sol = simulate(
                field,
                z,
                args,
                t0=t0,
                t1=t1,
                ts=jnp.asarray([t1]),
                saveat=diffrax.SaveAt(t1=True),
                event=event,
                rtol=rtol,
                atol=atol,
                max_steps=max_steps,
                progress_meter=progress_meter,
            )
            last = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
            return last, float(sol.ts[-1]), int(sol.stats["num_steps"]), result_name(sol.result)

    while True:
        z, t, seg_steps, result = advance(z, t, horizon, event)
        segments += 1
        steps += seg_steps
        before = residual_norm(field, z, args)
        polished, _ = polish(field, z, args)
        after = residual_norm(field, polished, args)
        scale = 1.0 + float(jnp.linalg.norm(ravel_pytree(z)[0]))
        move = float(jnp.linalg.norm(ravel_pytree(polished)[0] - ravel_pytree(z)[0])) / scale
        residual_ok = (
            np.isfinite(after)
            and before <= accept_tol
            and after <= residual_tol
            and move <= move_tol
        )
        at = polished if residual_ok else z
        J = jacobian(field, at, args)
        ev = eigenvalues(J)
        max_real = float(np.max(ev.real))
        stable = max_real <= growth_tol
        if residual_ok and stable:
            status = "fixed-point"
        elif residual_ok:
            status = "saddle"
        else:
            status = "slow-transient"
        done = (
            status == "fixed-point" or t >= t_max or result not in ("successful", "event_occurred")
        )
        if status == "saddle" and escapes >= max_escapes:
            done = True
        if done:
            return SteadyState(
                state=at,
                integrated=z,
                status=status,
                t=t,
                residual_before=before,
                residual_after=after,
                polish_move=move,
                eigenvalues=ev,
                max_real=max_real,
                zero_modes=int(np.sum(np.abs(ev) <= zero_tol)),
                jacobian=J,
                steps=steps,
                segments=segments,
                escapes=escapes,
                result=result,
            )
        if status == "saddle":
            # Sitting on a saddle, round-off alone would take ~ log(1/eps)/max_real to leave.
            w, V = np.linalg.eig(J)
            v = np.real(V[:, int(np.argmax(w.real))])
            flat, unravel = ravel_pytree(z)
            z = unravel(flat + escape * scale * jnp.asarray(v / np.linalg.norm(v), flat.dtype))
            escapes += 1
        horizon = min(max(10.0 * t, t + t1), float(t_max))


def projection_fixed_point(
    data,
    state0,
    *,
    stop_gradient: bool,
    sector_tol: float = 1e-6,
    collapse_tol: float = 1e-8,
    path: str = "reduced",
    **kwargs,
) -> dict:
    """Run the projection model to a steady state and analyse it (docs/theory.md §3, P1–P3).

    Args:
        data: a [`StandardData`][collapse_jax.data.StandardData].
        state0: a [`ProjectionState`][collapse_jax.ProjectionState].
        stop_gradient: which field.
        path: ``"reduced"`` (default): the integration segments run on the reduced path of
            [`simulate_projection`][collapse_jax.projection.simulate_projection] (cost independent
            of `n`), lifted back to every sample after each segment; the polish and the Jacobian
            spectrum are those of the full field. ``"full"``: integrate every sample.
        sector_tol: tolerance of [`bias_sectors`][collapse_jax.spectral.bias_sectors].
        collapse_tol: ``MinL2`` below this is collapsed.
        **kwargs: passed to [`find_steady_state`][collapse_jax.steady.find_steady_state].

    Returns:
        A dict with the keys of ``collapse-jax fixed-point --json`` (docs/cli.md): ``min_l2``,
        ``residual_norm`` (after polish), ``residual_before_polish``, ``w_eigenvalues_abs``
        (sorted), ``predicted_bias_eigenvalue`` `n/(n+M)`, ``omega_max_eigenvalue``,
        ``omega_bound``, ``jacobian_max_real``, ``zero_modes``, ``status``, ``branch`` (one
        of [`BRANCHES`][collapse_jax.steady.BRANCHES]), ``bias_sectors``,
        ``label_span_w_eigenvalues`` (and ``label_span_leakage``), ``asymmetry_norm``,
        ``t_reached``, ``steps``, plus ``steady`` (the
        [`SteadyState`][collapse_jax.steady.SteadyState], not JSON).

    Zero modes: the fixed points of both fields form manifolds. For stop-gradient they are
    `{W x_i = y_c (clean), W x_s = ybar, (n+M) y_c = n xbar_c + M xbar_S}`; linearised, the
    sample constraints `dW x_i + W dx_i = dt_i` lose rank where `W` is singular (only the
    range of `W` is reachable through `dx_i`, the rest only through the `d - r` rows of `dW`
    outside it), so the manifold has dimension `d^2 + (N - rank X)(d - r)` with `r = rank W`
    and `X` the sample matrix: ``zero_modes_predicted``. (For K=3, n=12, M=2, d=5, r=3: 91,
    the count docs/theory.md §3 P3 reports.) The rotations `x -> R x, y -> R y, W -> R W R^T`, a
    symmetry of both losses, are `d(d-1)/2` of these directions.

    Branches: a non-fixed point is ``"saddle"`` or ``"slow-transient"``. A fixed point is
    ``"collapsed"`` when ``MinL2 <= collapse_tol``, ``"separated"`` when every bias direction
    is separated (eigenvalue `n/(n+M)` of `W`), ``"bias-in-kernel"`` when one is lost, and
    ``"other"`` otherwise.
    """
    from .fields import vector_field
    from .losses import projection_loss
    from .metrics import min_l2
    from .projection import stop_gradient_zero_modes

    A = data.matrix()
    n, M = data.per_class, float(data.shared_total)
    field = vector_field(projection_loss, stop_gradient=stop_gradient)
    if path == "reduced":
        kwargs["advance"] = _reduced_advance(data, stop_gradient, kwargs)
    elif path != "full":
        raise ValueError(f"path must be 'reduced' or 'full', got {path!r}")
    st = find_steady_state(field, state0, A, **kwargs)
    z = st.state
    W, y = np.asarray(z.W), np.asarray(z.y)
    ml2 = float(min_l2(z.y))
    sectors = bias_sectors(W, y, n, M, tol=sector_tol)
    if st.status != "fixed-point":
        branch = st.status
    elif ml2 <= collapse_tol:
        branch = "collapsed"
    elif all(s["sector"] == "separated" for s in sectors):
        branch = "separated"
    elif any(s["sector"] == "lost" for s in sectors):
        branch = "bias-in-kernel"
    else:
        branch = "other"
    span = label_span_spectrum(W, y)
    zero = stop_gradient_zero_modes(z.x, W)  # every row of x counts (as reported before)
    return {
        "min_l2": ml2,
        "residual_norm": st.residual_after if st.status == "fixed-point" else st.residual_before,
        "residual_before_polish": st.residual_before,
        "residual_after_polish": st.residual_after,
        "polish_move": st.polish_move,
        "w_eigenvalues_abs": np.sort(np.abs(np.linalg.eigvals(W))),
        "predicted_bias_eigenvalue": n / (n + M),
        "omega_max_eigenvalue": omega_max_eigenvalue(W, n, M),
        "omega_bound": n / (n + M),
        "jacobian_max_real": st.max_real,
        "zero_modes": st.zero_modes,
        "zero_modes_predicted": zero["count"],
        "w_rank": zero["rank_w"],
        "n_variables": int(st.jacobian.shape[0]),
        "status": st.status,
        "branch": branch,
        "bias_sectors": sectors,
        "label_span_w_eigenvalues": span["eigenvalues"].real,
        "label_span_w_eigenvalues_imag": span["eigenvalues"].imag,
        "label_span_leakage": span["leakage"],
        "asymmetry_norm": asymmetry_norm(st.jacobian),
        "t_reached": st.t,
        "steps": st.steps,
        "segments": st.segments,
        "escapes": st.escapes,
        "result": st.result,
        "stop_gradient": bool(stop_gradient),
        "steady": st,
    }


def _reduced_advance(data, stop_gradient, kwargs):
    """An ``advance`` for [`find_steady_state`][collapse_jax.steady.find_steady_state] on the
    projection model's reduced path."""
    from .projection import simulate_projection

    kw = {k: kwargs[k] for k in ("rtol", "atol", "max_steps", "progress_meter") if k in kwargs}
    # Tighter than the full path's defaults: the explicit (slow) half of the IMEX step sits at
    # its stability limit near a fixed point, so the residual settles at the tolerance level
    # instead of decaying (rms ~1e-9 at rtol 1e-8, atol 1e-10, K=3, n=6, M=2, d=4) and the
    # acceptance test (|F|_2 <= accept_tol before the polish) needs it well below 1e-8.
    kw.setdefault("rtol", 1e-10)
    kw.setdefault("atol", 1e-13)

    def advance(z, t0, t1, event):
        run = simulate_projection(
            data,
            z,
            stop_gradient=stop_gradient,
            t0=t0,
            t1=t1,
            ts=jnp.asarray([t1]),
            saveat=diffrax.SaveAt(t1=True),
            event=event,
            **kw,
        )
        last = jax.tree_util.tree_map(lambda a: a[-1], run.states)
        return last, float(run.ts[-1]), int(run.steps), result_name(run.result)

    return advance


def classify_starts(data, dim: int, seeds, *, stop_gradient: bool = True, **kwargs) -> dict:
    """P2 of docs/theory.md §3: run many starts and count the branch each one reaches.

    Every start is [`init_projection_state`][collapse_jax.data.init_projection_state] from
    ``PRNGKey(seed)``; each is analysed by
    [`projection_fixed_point`][collapse_jax.steady.projection_fixed_point] (``**kwargs``
    passed on). Returns ``{"counts": branch -> count, "fractions": branch -> fraction,
    "runs": [per-seed dict without the SteadyState]}``.
    """
    from .data import init_projection_state

    runs = []
    for seed in seeds:
        z0 = init_projection_state(
            jax.random.PRNGKey(int(seed)), data.n_samples, data.n_classes, dim
        )
        out = projection_fixed_point(data, z0, stop_gradient=stop_gradient, **kwargs)
        out.pop("steady")
        out["seed"] = int(seed)
        runs.append(out)
    counts = {b: sum(r["branch"] == b for r in runs) for b in BRANCHES}
    total = max(len(runs), 1)
    return {
        "counts": counts,
        "fractions": {b: c / total for b, c in counts.items()},
        "runs": runs,
    }
