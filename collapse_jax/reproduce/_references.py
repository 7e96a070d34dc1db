"""Independent references written out in numpy and scipy: the closed-form rates, MinL2,
`scipy.linalg.expm` of the embedding loss Hessian, the projection-model fields and an
integration of every sample."""

from __future__ import annotations

import math

import numpy as np


def _closed_lambda(n, M) -> tuple[float, float]:
    """`lambda_pm = ½[−(n+M+1) ± √((n+M+1)² − 4M)]`, written out in numpy: the reference the
    fitted rates are held to (independent of the library's sector solution)."""
    b = float(n) + float(M) + 1.0
    r = math.sqrt(b * b - 4.0 * float(M))
    return 0.5 * (-b + r), 0.5 * (-b - r)


def _np_min_l2(y) -> np.ndarray:
    """MinL2 of label positions ``y`` (``(..., K, d)``) in numpy: the smallest pairwise
    distance."""
    y = np.asarray(y, dtype=np.float64)
    K = y.shape[-2]
    D = np.linalg.norm(y[..., :, None, :] - y[..., None, :, :], axis=-1)
    D[..., np.arange(K), np.arange(K)] = np.inf
    return D.min(axis=(-2, -1))


def _expm_reference(A, x0, y0, ts):
    """`z(t) = expm(J t) z(0)` with `J = −∇²L_E` assembled in numpy from the alignment matrix.

    `L_E = ½ Σ_ic A_ic ‖x_i − y_c‖²` is quadratic; per coordinate its Hessian over
    `(x_1..x_N, y_1..y_K)` is `[[diag(A 1), −A], [−Aᵀ, diag(Aᵀ 1)]]` and the full one is that
    matrix Kronecker `I_d`, so `expm(J t)` acts on each of the `d` coordinate columns alike.
    Returns ``(x(t), y(t))`` at every ``ts`` (``scipy.linalg.expm`` per time).
    """
    from scipy.linalg import expm

    A = np.asarray(A, dtype=np.float64)
    N, K = A.shape
    H = np.zeros((N + K, N + K))
    H[:N, :N] = np.diag(A.sum(axis=1))
    H[N:, N:] = np.diag(A.sum(axis=0))
    H[:N, N:] = -A
    H[N:, :N] = -A.T
    v0 = np.concatenate([np.asarray(x0, np.float64), np.asarray(y0, np.float64)])
    v = np.stack([expm(-H * float(t)) @ v0 for t in np.asarray(ts)])
    return v[:, :N], v[:, N:]


def _np_projection_field(x, y, W, A, stop_gradient: bool):
    """The projection-model fields written out in numpy (no autodiff), as references.

    With `e_i = sum_c A_ic (W x_i - y_c)`: `dx_i = -W^T e_i`, `dW = -sum_i e_i x_i^T`,
    `dy_c = -sum_i A_ic (y_c - x_i)`; the conservative field adds `-sum_c A_ic (x_i - y_c)`
    to `dx_i` and `sum_i A_ic (W x_i - y_c)` to `dy_c` (the terms stop-gradient holds).
    """
    x, y, W, A = (np.asarray(a, dtype=np.float64) for a in (x, y, W, A))
    a, b = A.sum(axis=1), A.sum(axis=0)
    e = (x @ W.T) * a[:, None] - A @ y
    dx, dW = -e @ W, -(e.T @ x)
    dy = -(b[:, None] * y - A.T @ x)
    if not stop_gradient:
        dx = dx - (a[:, None] * x - A @ y)
        dy = dy + A.T @ (x @ W.T) - b[:, None] * y
    return dx, dy, dW


def _np_omega(W, n: float, M: float) -> np.ndarray:
    """`Omega(W)` in its projector form `n/(2(n+M)) [I I] Q Q^T [I; I]`, `Q` an orthonormal
    basis (QR) of the columns of `G = [I; W]`: no inverse of `I + W^T W` is formed."""
    W = np.asarray(W, dtype=np.float64)
    eye = np.eye(W.shape[0])
    Q, _ = np.linalg.qr(np.vstack([eye, W]))
    P = np.hstack([eye, eye]) @ Q
    return n / (2.0 * (n + M)) * (P @ P.T)


def _collapsed_tangent(u, W, N: int, K: int) -> np.ndarray:
    """Tangent vectors of the collapsed fixed-point set at `(x_i = y_c = u, W)` with `W u = u`.

    Parametrisation (by hand): `x_i = u`, `y_c = u`, `W = P_u + Z (I - P_u)` with
    `P_u = u u^T / |u|^2` and `Z` free; every such state has `L_P = 0`, hence is a fixed point
    of both fields. Columns: derivatives in `u` (`d`) and in `Z` (`d^2`, of which `d` vanish),
    flattened in the state order `(x, y, W)`; their rank is the set's dimension.
    """
    u, W = np.asarray(u, dtype=np.float64), np.asarray(W, dtype=np.float64)
    d = u.size
    uu = float(u @ u)
    P = np.outer(u, u) / uu
    eye = np.eye(d)
    cols = []
    for k in range(d):
        dP = (np.outer(eye[k], u) + np.outer(u, eye[k])) / uu - 2.0 * u[k] * np.outer(u, u) / uu**2
        dW = dP - W @ dP  # d/du of P + Z (I - P) at Z with Z (I - P) = W (I - P)
        cols.append(np.concatenate([np.tile(eye[k], N), np.tile(eye[k], K), dW.ravel()]))
    for a in range(d):
        for b in range(d):
            E = np.zeros((d, d))
            E[a, b] = 1.0
            cols.append(np.concatenate([np.zeros(N * d + K * d), (E @ (eye - P)).ravel()]))
    return np.stack(cols, axis=1)


def _scipy_projection_path(z, A, ts, stop_gradient: bool, rtol: float = 1e-12):
    """Every sample integrated by scipy's LSODA (Adams / BDF, switching on stiffness) on
    `_np_projection_field`; the state flattened as `(x, y, W)` at ``ts`` (rows), the
    number of field evaluations, the status. (DOP853 agreed as well, but the stiff `W`
    block at the fixed point cost it 5x the evaluations: 8 s against 1 s at K=3, n=10.)"""
    from scipy.integrate import solve_ivp

    x0, y0, W0 = (np.asarray(a, dtype=np.float64) for a in (z.x, z.y, z.W))
    N, K, d = x0.shape[0], y0.shape[0], W0.shape[0]
    A = np.asarray(A, dtype=np.float64)

    def rhs(_t, v):
        x, y = v[: N * d].reshape(N, d), v[N * d : (N + K) * d].reshape(K, d)
        W = v[(N + K) * d :].reshape(d, d)
        return np.concatenate([f.ravel() for f in _np_projection_field(x, y, W, A, stop_gradient)])

    v0 = np.concatenate([x0.ravel(), y0.ravel(), W0.ravel()])
    ts = np.asarray(ts, dtype=np.float64)
    sol = solve_ivp(rhs, (0.0, ts[-1]), v0, method="LSODA", t_eval=ts, rtol=rtol, atol=rtol)
    return sol.y.T, int(sol.nfev), int(sol.status)
