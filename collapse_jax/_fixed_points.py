"""Fixed points and linear stability of one mechanism.

[`mechanism_fixed_point`][collapse_jax.mechanism_fixed_point] finds the steady state a
mechanism's flow reaches from a start and the spectrum of its Jacobian there;
[`predicted_zero_modes`][collapse_jax.predicted_zero_modes] counts the zero modes of that
Jacobian without the field (the sample-label graph, the zero-loss manifold, the stop-gradient
manifold of docs/theory.md §3). [`fixed_point_analysis`][collapse_jax.fixed_point_analysis]
runs both for every mechanism and frustration ratio.
"""

from __future__ import annotations

import numpy as np

from ._mechanisms import get_mechanism
from ._metrics import min_l2
from ._projection import _rank, stop_gradient_zero_modes
from ._spectral import asymmetry_norm, eigenvalues, jacobian
from ._steady import find_steady_state

__all__ = ["mechanism_fixed_point", "predicted_zero_modes"]


def mechanism_fixed_point(mechanism, data, state0, value=None, *, zero_tol=1e-7, **kwargs):
    """Steady state reached from ``state0`` and its Jacobian spectrum (host, float64).

    [`find_steady_state`][collapse_jax.find_steady_state] on the mechanism's field
    (integrate, polish, refuse slow transients and saddles; ``kwargs`` passed on), then the spectrum
    of the autodiff Jacobian of the field (correct for held-slot fields, docs/theory.md §3). Returns
    ``status`` (``"fixed-point"``, ``"slow-transient"``, ``"saddle"``), ``min_l2``, ``residual``,
    ``max_real`` (largest real part), ``zero_modes`` (`|lambda| <= zero_tol`), ``n_variables``,
    ``asymmetry_norm`` `|J - J^T|_F`, ``eigenvalues`` and ``t``.

    Closed forms exist for ``mse`` (docs/theory.md §2) and ``ema``
    ([`ema_bias_matrix`][collapse_jax.ema_bias_matrix]; both linear, so the spectrum is
    the same at every state) and for the fixed points of ``simsiam`` (docs/theory.md §3, P2: `W` has
    eigenvalue `n/(n+M)` on the bias directions; ``ema_predictor`` has the same fixed points, with
    `y_ema = y`). ``infonce``, ``vicreg`` and ``predictor`` are numerical only.
    """
    mech = get_mechanism(mechanism)
    args = mech.data_args(data, value)
    field = mech.field()
    st = find_steady_state(field, state0, args, zero_tol=zero_tol, **kwargs)
    J = jacobian(field, st.state, args)
    ev = eigenvalues(J)
    residual = st.residual_after if st.status == "fixed-point" else st.residual_before
    return {
        "mechanism": mech.name,
        "value": value,
        "status": st.status,
        "min_l2": float(min_l2(st.state.y)),
        "residual": float(residual),
        "max_real": float(ev.real.max()),
        "zero_modes": int(np.sum(np.abs(ev) <= zero_tol)),
        "n_variables": int(J.shape[0]),
        "asymmetry_norm": asymmetry_norm(J),
        "eigenvalues": ev,
        "t": float(st.t),
        "state": st.state,
    }


def _components(A) -> int:
    """Connected components of the bipartite sample-label graph (edges `A_ic > 0`); an
    inactive row or an unused label is a component of its own."""
    A = np.asarray(A) > 0
    N, K = A.shape
    parent = list(range(N + K))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, c in zip(*np.nonzero(A), strict=True):
        parent[find(int(i))] = find(N + int(c))
    return len({find(a) for a in range(N + K)})


def _predictor_residual_rank(x, y, W, A) -> int:
    """Rank of the Jacobian of the residuals `(W x_i - y_c, y_c - x_i)` over active pairs,
    with respect to `(x, y, W)` (built by hand, not from the field)."""
    N, d = x.shape
    K = y.shape[0]
    n_var = N * d + K * d + d * d
    rows = []
    eye = np.eye(d)
    for i, c in zip(*np.nonzero(np.asarray(A) > 0), strict=True):
        r1 = np.zeros((d, n_var))  # d(W x_i - y_c) = W dx_i + dW x_i - dy_c
        r1[:, i * d : (i + 1) * d] = W
        r1[:, N * d + c * d : N * d + (c + 1) * d] = -eye
        r1[:, N * d + K * d :] = np.kron(eye, x[i][None, :])  # row-major dW
        r2 = np.zeros((d, n_var))  # d(y_c - x_i)
        r2[:, N * d + c * d : N * d + (c + 1) * d] = eye
        r2[:, i * d : (i + 1) * d] = -eye
        rows += [r1, r2]
    return _rank(np.concatenate(rows), 1e-9)


def predicted_zero_modes(mechanism, state, data) -> tuple[int | None, str]:
    """Zero-mode count of the Jacobian at a fixed point, predicted without the field.

    Returns ``(count, why)``; ``count`` is ``None`` where there is no prediction
    (``infonce``: no fixed point; ``vicreg``: numerical only, see docs/mechanisms.md).

    * ``mse``, ``ema``: the field is linear and the fixed points are the states where every
      connected component of the sample-label graph (edges `A_ic > 0`) sits at one point
      (for ``ema`` also `y_ema = y`): `d x components`. Standard data: `K d` at `M = 0`
      (one translation per class: the conserved bias), `d` at `M > 0` (global translation).
    * ``predictor`` (conservative, P1): fixed points are zero-loss states
      `W x_i = y_c = x_i`; zero modes = kernel of the residual Jacobian
      (``n_variables - rank``, built by hand). It is `d^2` when the distinct label points
      are linearly independent or collapsed, `d^2 + (K - k) k` when `K` labels span only
      `k` dimensions (standard data, `M = 0`, `W = I` on their span).
    * ``simsiam``, ``ema_predictor``: the manifold of docs/theory.md §3 (P3),
      `d^2 + (N - rank X)(d - rank W)` (the EMA copy adds no zero mode: `y_ema = y` is fixed
      by its relaxation at rate `1/tau_ema`).
    Every count contains the rotations `x -> R x, y -> R y (, W -> R W R^T)`, `d(d-1)/2`
    directions, where the fixed point is not rotation-invariant.
    """
    mech = get_mechanism(mechanism)
    A = np.asarray(data.matrix())
    x = np.asarray(state.x)
    N, d = x.shape
    if mech.name in ("mse", "ema"):
        comp = _components(A)
        return d * comp, f"d x components of the sample-label graph = {d} x {comp}"
    if mech.name == "predictor":
        y, W = np.asarray(state.y), np.asarray(state.W)
        n_var = N * d + y.size + W.size
        rank = _predictor_residual_rank(x, y, W, A)
        k = _rank(y)
        return n_var - rank, (
            f"zero-loss manifold W x_i = y_c = x_i: {n_var} variables - residual rank {rank} "
            f"(labels span {k} dims; d^2 = {d * d})"
        )
    if mech.name in ("simsiam", "ema_predictor"):
        z = stop_gradient_zero_modes(x, state.W, A)
        n_act, rx, rw = z["active"], z["rank_x"], z["rank_w"]
        return z["count"], (
            f"d^2 + (N - rank X)(d - rank W) = {d * d} + ({n_act} - {rx})({d} - {rw})"
        )
    if mech.name == "vicreg":
        return None, "numerical only: d translations + flat directions of the statistics"
    return None, "no fixed point expected (the separation grows)"
