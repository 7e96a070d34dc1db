"""Steady states of a gradient-flow field: integrate, polish, classify (docs/theory.md §3).

[`find_steady_state`][collapse_jax.find_steady_state] never reports a slow transient as
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

The finder knows no model: the projection model's analysis on top of it (`W` spectrum, `Omega`,
bias sectors, branch; branch counts over many starts, P2) is
[`projection_fixed_point`][collapse_jax.projection_fixed_point] and
[`classify_starts`][collapse_jax.classify_starts].
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

from ._integrate import result_name, simulate
from ._spectral import (
    eigenvalues,
    jacobian,
)

__all__ = [
    "SteadyState",
    "find_steady_state",
    "polish",
    "residual_norm",
]


class SteadyState(NamedTuple):
    """Outcome of [`find_steady_state`][collapse_jax.find_steady_state] (host values).

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
        rtol: passed to [`simulate`][collapse_jax.simulate] (implicit Kvaerno5: the
            `W` block is stiff, docs/theory.md §6). The ``rtol``/``atol`` defaults are looser
            than the trajectory defaults: the end state is polished anyway, and at 1e-10 the
            stop-gradient runs took 2-3x more steps (K=3, n=4, M=2, d=4).
        atol: passed to [`simulate`][collapse_jax.simulate] (see ``rtol``).
        max_steps: passed to [`simulate`][collapse_jax.simulate].
        progress_meter: passed to [`simulate`][collapse_jax.simulate].
        advance: optional ``advance(z, t0, t1, event) -> (z1, t_reached, steps, result)``
            replacing the integration of ``field`` (e.g. the projection model's reduced path,
            [`projection_fixed_point`][collapse_jax.projection_fixed_point]);
            the polish and the Jacobian always use ``field``.

    Returns:
        A [`SteadyState`][collapse_jax.SteadyState].
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
