"""Self-consistent (Dyson-type) solution of the projection model by windowed Picard iteration.

The equation iterated is written out in ``docs/dmft.md``. In short: split the order parameters
of [`reduced_field`][collapse_jax.reduced_field] into the predictor `W` and the rest,
`u = (xbar_c, xbar_S, y_c, C, C_S)`. Given a trajectory `W(t)` the rest obeys *linear*
equations (stop-gradient field, `G(t) = W(t)^T W(t)`, shared weight `w`, `M = w m`):

    d xbar_c/dt = -G xbar_c + W^T y_c,      d xbar_S/dt = -K w (G xbar_S - W^T ybar),
    d y_c/dt    = -(n+M) y_c + n xbar_c + M xbar_S,
    dC/dt = -(G C + C G),                    dC_S/dt = -K w (G C_S + C_S G),

so `u(t) = Phi_W(t, t0) u(t0)` with the time-ordered propagator
`Phi_W(t, t0) = T exp(int_{t0}^t L(W(s)) ds)`. Integrating `u` out leaves one closed equation for
`W` with memory,

    dW/dt = -W S_W(t) + B_W(t),  i.e.
    W(t) = W(t0) U_W(t, t0)^T + int_{t0}^t B_W(s) U_W(t, s)^T ds,

`S = n (C + sum_c xbar_c xbar_c^T) + K M (C_S + xbar_S xbar_S^T)`, `B = n sum_c y_c xbar_c^T +
K M ybar xbar_S^T` evaluated on `Phi_W u(t0)`, and `d/dt U_W(t, s) = -S_W(t) U_W(t, s)`: the
right-hand side at time `t` depends on the whole history of `W` since `t0`. The unknown
iterated is `W` itself, not its Gram matrix. (The conservative field has the same structure,
with `G + I`; see the docs page.)

**Solver.** The equation is solved by Picard iteration on consecutive windows of length
``window``: on each window, (i) propagate `u` given the current iterate `W^(k)(t)`, (ii) solve
the linear `W` equation given that `u(t)`, giving `W^(k+1)(t)`, until
`max_t |W^(k+1) - W^(k)| < tol` on the window's check points, or until that change stops
falling below the sub-solves' own accuracy, `10 (rtol max|W| + atol)` (closer than that two
iterates cannot agree, whatever ``tol`` asks). Both sub-solves are diffrax
solves with dense (solver-order) interpolation, which carries the iterate between them. A
whole-interval iteration diverges (with `W` frozen the `(xbar, y)` equations are unstable
whenever `W` scales a bias direction by less than `n/(n+M)`, and the stop-gradient fixed point
sits on that edge), so windows must be short; a window that does not converge is reported
with its last change, never silently accepted.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._metrics import min_l2
from ._reduced import ReducedParams, ReducedState, reduce_state, reduced_field, reduced_params

__all__ = ["DMFTResult", "solve_dmft", "compare_with_direct", "dmft_report"]


class DMFTResult(NamedTuple):
    """Output of [`solve_dmft`][collapse_jax.solve_dmft] (host arrays).

    Attributes:
        t: window end times (and `t0`), `(T,)`.
        states: [`ReducedState`][collapse_jax.ReducedState] with a leading time axis.
        min_l2: MinL2 of the label embeddings at ``t``.
        iterations: Picard iterations used on each window, `(T-1,)`.
        changes: last `max |W^(k+1) - W^(k)|` on each window.
        converged: every window converged.
        message: why not, when not.
        seconds: wall time (compilation included).
        w_dense: with ``keep_dense=True``, the converged iterate `W(t)` of each reported
            window as a diffrax dense solution (``w_dense[i].evaluate(t)`` for
            ``t`` in ``[t[i], t[i+1]]``), so that the fixed-point map can be re-evaluated
            on it; ``None`` otherwise.
    """

    t: np.ndarray
    states: ReducedState
    min_l2: np.ndarray
    iterations: np.ndarray
    changes: np.ndarray
    converged: bool
    message: str
    seconds: float
    w_dense: tuple | None = None


class _UField(eqx.Module):
    field: eqx.Module

    def __call__(self, t, u, args):
        w_sol, p = args
        F = self.field(t, u._replace(W=w_sol.evaluate(t)), p)
        return F._replace(W=jnp.zeros_like(F.W))


class _WField(eqx.Module):
    field: eqx.Module

    def __call__(self, t, W, args):
        u_sol, p = args
        return self.field(t, u_sol.evaluate(t)._replace(W=W), p).W


def _zero(t, W, args):
    return jnp.zeros_like(W)


#: Two Picard iterates, each solved to ``(rtol, atol)``, agree to about ``rtol |W| + atol``
#: (measured: within 2x of it); a change below ``_NOISE`` times that is as small as the
#: sub-solves can make it.
_NOISE = 10.0


@functools.lru_cache(maxsize=16)
def _make_window(stop_gradient, solver, rtol, atol, max_steps, tol, max_iter, n_check):
    field = reduced_field(stop_gradient=stop_gradient)
    u_term = diffrax.ODETerm(_UField(field))
    w_term = diffrax.ODETerm(_WField(field))
    ctrl = diffrax.PIDController(rtol=rtol, atol=atol)
    saveat = diffrax.SaveAt(dense=True, t1=True)

    def solve(term, y0, t0, t1, args):
        return diffrax.diffeqsolve(
            term,
            solver,
            t0,
            t1,
            None,
            y0,
            args,
            saveat=saveat,
            stepsize_controller=ctrl,
            max_steps=max_steps,
            throw=False,
        )

    @jax.jit
    def window(z0: ReducedState, t0, t1, p: ReducedParams):
        check = t0 + (t1 - t0) * jnp.linspace(0.0, 1.0, n_check + 1)[1:]
        w_sol = solve(diffrax.ODETerm(_zero), z0.W, t0, t1, None)  # W^(0) = W(t0)

        def body(carry):
            w_sol, k, change, _, _, _ = carry
            u_sol = solve(u_term, z0, t0, t1, (w_sol, p))
            w_new = solve(w_term, z0.W, t0, t1, (u_sol, p))
            new_w, old_w = jax.vmap(w_new.evaluate)(check), jax.vmap(w_sol.evaluate)(check)
            new = jnp.max(jnp.abs(new_w - old_w))
            new = jnp.where(jnp.isfinite(new), new, jnp.inf)
            ok = (u_sol.result == diffrax.RESULTS.successful) & (
                w_new.result == diffrax.RESULTS.successful
            )
            # what the sub-solves resolve: two iterates cannot agree better than this
            floor = _NOISE * (rtol * jnp.max(jnp.abs(new_w)) + atol)
            return w_new, k + 1, new, change, floor, ok

        def cond(carry):
            _, k, change, previous, floor, ok = carry
            # at the sub-solves' accuracy the change stops falling: iterating on only
            # reshuffles their round-off
            stalled = (change <= floor) & (change >= previous)
            running = (k < max_iter) & (change > tol) & ~stalled & ok & jnp.isfinite(change)
            return (k == 0) | running

        inf = jnp.asarray(jnp.inf)
        w_sol, k, change, _, floor, ok = jax.lax.while_loop(
            cond, body, (w_sol, jnp.asarray(0), inf, inf, inf, jnp.asarray(True))
        )
        u_sol = solve(u_term, z0, t0, t1, (w_sol, p))
        z1 = u_sol.evaluate(t1)._replace(W=w_sol.evaluate(t1))
        ok = ok & (u_sol.result == diffrax.RESULTS.successful)
        return z1, k, change, jnp.maximum(tol, floor), ok, w_sol

    return window


def solve_dmft(
    z0: ReducedState,
    params: ReducedParams,
    *,
    t1: float,
    window: float = 0.1,
    stop_gradient: bool = True,
    tol: float = 1e-10,
    max_iter: int = 50,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    n_check: int = 8,
    solver: diffrax.AbstractSolver | None = None,
    max_steps: int = 4096,
    keep_dense: bool = False,
) -> DMFTResult:
    """Solve the self-consistent equation for `W(t)` on `[0, t1]` by windowed Picard iteration.

    Args:
        z0: initial order parameters ([`reduce_state`][collapse_jax.reduce_state]).
        params: group sizes ([`reduced_params`][collapse_jax.reduced_params]).
        t1: end time; ``window``: window length (the last one may be shorter).
        tol: convergence threshold on `max |W^(k+1) - W^(k)|` at ``n_check`` points a window.
            A window also converges once that change is within the sub-solves' accuracy,
            `10 (rtol max|W| + atol)`, and stops falling (or ``max_iter`` is reached there).
        max_iter: iterations a window before it is declared not converged.
        rtol: relative tolerance of the two sub-solves.
        atol: absolute tolerance of the two sub-solves.
        solver: solver of the two sub-solves (default Tsit5; the sub-problems are linear).
        keep_dense: keep each window's converged `W` iterate (``DMFTResult.w_dense``; each
            holds ``max_steps`` dense steps, so lower ``max_steps`` for long runs).

    The equation iterated, the propagators and the map `W -> W_new` are written out in
    ``docs/dmft.md``.

    The loop stops at the first window that does not converge (or whose sub-solve fails) and
    says so in ``message``.
    """
    if not (np.isfinite(t1) and t1 > 0):
        raise ValueError(f"t1 must be a positive number, got {t1}")
    if not (np.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number, got {window}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    solver = diffrax.Tsit5() if solver is None else solver
    step = _make_window(stop_gradient, solver, rtol, atol, max_steps, tol, max_iter, n_check)
    start = time.perf_counter()
    edges = np.arange(0.0, t1, window)
    edges = np.append(edges, t1) if edges[-1] < t1 else edges
    states, iters, changes, dense = [z0], [], [], []
    converged, message = True, ""
    z = z0
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        z, k, change, reach, ok, w_sol = step(z, jnp.asarray(a), jnp.asarray(b), params)
        iters.append(int(k))
        changes.append(float(change))
        if not bool(ok) or not np.isfinite(float(change)):
            converged = False
            message = (
                f"window [{a:.4g}, {b:.4g}]: a sub-solve failed or diverged after "
                f"{int(k)} iterations (last change {float(change):.3g}); try a shorter "
                "window"
            )
            break
        if float(change) > float(reach):
            converged = False
            message = (
                f"window [{a:.4g}, {b:.4g}]: no convergence in {int(k)} iterations "
                f"(last change {float(change):.3g} > tol {tol:g} and > the sub-solves' "
                f"accuracy {float(reach):.3g}); try a shorter window"
            )
            break
        states.append(z)
        if keep_dense:
            dense.append(w_sol)
    t = edges[: len(states)]
    stacked = jax.tree.map(lambda *v: np.stack([np.asarray(a) for a in v]), *states)
    return DMFTResult(
        t=np.asarray(t),
        states=stacked,
        min_l2=np.array([float(min_l2(jnp.asarray(y))) for y in stacked.y]),
        iterations=np.asarray(iters),
        changes=np.asarray(changes),
        converged=converged,
        message=message,
        seconds=time.perf_counter() - start,
        w_dense=tuple(dense) if keep_dense else None,
    )


def compare_with_direct(
    res: DMFTResult, z0: ReducedState, params: ReducedParams, *, stop_gradient: bool = True
) -> dict:
    """Check a self-consistent solution against a direct integration of the reduced field.

    Integrates [`reduced_field`][collapse_jax.reduced_field] from ``z0`` with diffrax
    Tsit5 (``rtol = atol = 1e-12``) and compares it with ``res`` at its window ends ``res.t[1:]``;
    what ``collapse-jax dmft`` reports.

    Args:
        res: the output of [`solve_dmft`][collapse_jax.solve_dmft] from ``z0``.
        z0: the reduced start the solve began from.
        params: the reduced-model parameters it used.
        stop_gradient: which field it solved.

    Returns:
        ``{"max_abs_difference", "max_abs_difference_w", "max_abs_difference_min_l2",
        "direct_seconds", "direct_result"}``: the largest ``|dmft - direct|`` over `W(t)` and
        MinL2(t), its two parts, the wall time and diffrax result of the direct integration.
        With no window (``len(res.t) == 1``) only ``max_abs_difference``, NaN.
    """
    from ._integrate import result_name, simulate

    if len(res.t) < 2:
        return {"max_abs_difference": float("nan")}
    start = time.perf_counter()
    direct = simulate(
        reduced_field(stop_gradient=stop_gradient),
        z0,
        params,
        ts=jnp.asarray(res.t[1:]),
        t1=float(res.t[-1]),
        solver=diffrax.Tsit5(),
        rtol=1e-12,
        atol=1e-12,
        max_steps=1_000_000,
    )
    d_w = float(np.max(np.abs(np.asarray(direct.ys.W) - res.states.W[1:])))
    d_m = float(np.max(np.abs(np.asarray(jax.vmap(min_l2)(direct.ys.y)) - res.min_l2[1:])))
    return {
        "max_abs_difference": max(d_w, d_m),
        "max_abs_difference_w": d_w,
        "max_abs_difference_min_l2": d_m,
        "direct_seconds": time.perf_counter() - start,
        "direct_result": result_name(direct.result),
    }


def dmft_report(
    state,
    data,
    *,
    t1: float,
    window: float = 1.0,
    stop_gradient: bool = True,
    tol: float = 1e-10,
    max_iter: int = 50,
) -> dict:
    """The self-consistent solve of the projection model from a full start, checked against
    direct integration: what ``collapse-jax dmft`` reports.

    Reduces ``state`` (a [`ProjectionState`][collapse_jax.ProjectionState] on the standard
    ``data``) to its order parameters, runs [`solve_dmft`][collapse_jax.solve_dmft] and
    [`compare_with_direct`][collapse_jax.compare_with_direct].

    Returns:
        ``converged``, ``message``, ``iterations`` (total), ``iterations_per_window``,
        ``windows``, ``seconds``, ``t``, ``min_l2``, ``stop_gradient``, and the keys of
        [`compare_with_direct`][collapse_jax.compare_with_direct].
    """
    z0 = reduce_state(state.x, state.y, state.W, data.n_classes, data.per_class, data.shared_mask)
    p = reduced_params(data)
    res = solve_dmft(
        z0, p, t1=t1, window=window, stop_gradient=stop_gradient, tol=tol, max_iter=max_iter
    )
    out = {
        "converged": res.converged,
        "message": res.message,
        "iterations": int(res.iterations.sum()),
        "iterations_per_window": res.iterations,
        "windows": len(res.iterations),
        "seconds": res.seconds,
        "t": res.t,
        "min_l2": res.min_l2,
        "stop_gradient": stop_gradient,
    }
    out.update(compare_with_direct(res, z0, p, stop_gradient=stop_gradient))
    return out
