"""Jacobians, their spectra and the sector decomposition (docs/theory.md §2, §3).

Eigenvalues are always taken on the host CPU in float64 with numpy: the stop-gradient
Jacobian is not symmetric and JAX has no general ``eig`` on GPU. Jacobians of derived fields
come from autodiff of the field itself ([`VectorField`][collapse_jax.fields.VectorField] is written
so that this is correct for stop-gradient fields too) and can be checked against
[`finite_difference_jacobian`][collapse_jax.spectral.finite_difference_jacobian].
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .data import StandardData
from .exact import sector_eigenvalues

__all__ = [
    "jacobian",
    "finite_difference_jacobian",
    "eigenvalues",
    "asymmetry_norm",
    "is_symmetric",
    "sector_basis",
    "sector_spectra",
    "embedding_spectrum_report",
    "steady_state_spectrum_report",
    "omega",
    "omega_max_eigenvalue",
    "label_span_spectrum",
    "bias_sectors",
    "projection_spectrum_report",
]


def _flat_field(field, state, args):
    flat, unravel = ravel_pytree(state)

    def f(v):
        return ravel_pytree(field(0.0, unravel(v), args))[0]

    return f, flat


def jacobian(field, state, args) -> np.ndarray:
    """`dF/dz` at ``state`` by forward-mode autodiff, as a host float64 `(D, D)` array.

    The state pytree is flattened with ``jax.flatten_util.ravel_pytree`` (row-major leaves in
    pytree order; for the embedding model `[x.ravel(), y.ravel()]`).
    """
    return np.asarray(_jacobian_jit(field, state, args), dtype=np.float64)


@eqx.filter_jit
def _jacobian_jit(field, state, args):
    # Module-level and filter-jitted so repeated calls on one field/shape reuse the compile.
    f, flat = _flat_field(field, state, args)
    return jax.jacfwd(f)(flat)


@eqx.filter_jit
def _central_differences(field, state, args, h):
    f, flat = _flat_field(field, state, args)
    E = h * jnp.eye(flat.size, dtype=flat.dtype)
    return jax.vmap(lambda e: (f(flat + e) - f(flat - e)) / (2 * h))(E)


def finite_difference_jacobian(field, state, args, step: float | None = None) -> np.ndarray:
    """Central finite differences of the field, column by column (the reference for
    [`jacobian`][collapse_jax.spectral.jacobian]). Error `O(step^2)` plus round-off
    `O(eps / step)`; default step `eps^(1/3)` times the state scale."""
    f, flat = _flat_field(field, state, args)
    eps = float(jnp.finfo(flat.dtype).eps)
    h = step if step is not None else eps ** (1 / 3) * max(1.0, float(jnp.max(jnp.abs(flat))))
    cols = _central_differences(field, state, args, jnp.asarray(h, flat.dtype))
    return np.asarray(cols, dtype=np.float64).T


def asymmetry_norm(J: np.ndarray) -> float:
    """`|J - J^T|_F`."""
    J = np.asarray(J)
    return float(np.linalg.norm(J - J.T))


def is_symmetric(J: np.ndarray, rtol: float = 1e-12) -> bool:
    """Symmetric to round-off: `|J - J^T|_F <= rtol |J|_F`."""
    J = np.asarray(J)
    return asymmetry_norm(J) <= rtol * max(float(np.linalg.norm(J)), 1.0)


def eigenvalues(J: np.ndarray) -> np.ndarray:
    """All eigenvalues of ``J`` on the host in float64, sorted by real then imaginary part.

    Symmetric matrices go through ``eigvalsh`` (real, more accurate); others through ``eigvals``.
    """
    J = np.asarray(J, dtype=np.float64)
    if is_symmetric(J):
        ev = np.linalg.eigvalsh(0.5 * (J + J.T)).astype(np.complex128)
    else:
        ev = np.linalg.eigvals(J)
    return ev[np.lexsort((ev.imag, ev.real))]


def _sum_zero_basis(size: int) -> np.ndarray:
    """Orthonormal basis `(size, size-1)` of vectors summing to zero."""
    if size <= 1:
        return np.zeros((size, 0))
    C = np.eye(size) - 1.0 / size
    q, _ = np.linalg.qr(C[:, : size - 1])
    return q


def sector_basis(data: StandardData) -> dict[str, np.ndarray]:
    """Orthonormal bases of the invariant sectors in the row space `(N + K)` (docs/theory.md §2).

    Row order: clean samples class-major, shared rows, then labels. Keys as in
    [`collapse_jax.exact.sector_eigenvalues`][collapse_jax.exact.sector_eigenvalues]. Sector II
    pairs each class-bias direction `b` (sum zero over classes) with `(b_c / sqrt(n)` on class `c`'s
    clean rows`)` and with `b` on the labels; sector III is spanned by the normalised indicators of
    the clean rows, the labels and the active shared rows.
    """
    K, n = data.n_classes, data.per_class
    mask = np.asarray(data.shared_mask) > 0
    rows = data.n_samples + K
    n_clean = K * n
    active = n_clean + np.flatnonzero(mask)
    inactive = n_clean + np.flatnonzero(~mask)
    label0 = data.n_samples

    sec_i = []
    within = _sum_zero_basis(n)
    for c in range(K):
        block = np.zeros((rows, within.shape[1]))
        block[c * n : (c + 1) * n] = within
        sec_i.append(block)
    shared = _sum_zero_basis(active.size)
    block = np.zeros((rows, shared.shape[1]))
    block[active] = shared
    sec_i.append(block)

    bias = _sum_zero_basis(K)  # (K, K-1)
    bx = np.zeros((rows, K - 1))
    bx[:n_clean] = np.repeat(bias, n, axis=0) / np.sqrt(n)
    by = np.zeros((rows, K - 1))
    by[label0:] = bias

    glob = [np.zeros(rows), np.zeros(rows)]
    glob[0][:n_clean] = 1 / np.sqrt(n_clean)
    glob[1][label0:] = 1 / np.sqrt(K)
    if active.size:
        g = np.zeros(rows)
        g[active] = 1 / np.sqrt(active.size)
        glob.append(g)

    out = {
        "I": np.concatenate(sec_i, axis=1),
        "II": np.concatenate([bx, by], axis=1),
        "III": np.stack(glob, axis=1),
    }
    if inactive.size:
        q = np.zeros((rows, inactive.size))
        q[inactive, np.arange(inactive.size)] = 1.0
        out["inactive"] = q
    return out


def sector_spectra(J: np.ndarray, data: StandardData, dim: int) -> dict[str, dict]:
    """Eigenvalues of `J` restricted to each sector, `Q^T J Q` with `Q = basis (x) I_d`.

    Returns ``name -> {"numeric": complex eigenvalues sorted, "leakage": |J Q - Q (Q^T J Q)|_F}``;
    zero leakage means the sector is invariant under `J`.
    """
    out = {}
    eye = np.eye(dim)
    for name, basis in sector_basis(data).items():
        Q = np.kron(basis, eye)
        Jr = Q.T @ J @ Q
        out[name] = {
            "numeric": eigenvalues(Jr),
            "leakage": float(np.linalg.norm(J @ Q - Q @ Jr)),
        }
    return out


def embedding_spectrum_report(field, state, data: StandardData) -> dict:
    """Jacobian spectrum of the embedding model vs the closed form of docs/theory.md §2.

    Returns the keys of ``collapse-jax spectrum --json`` (docs/cli.md): ``numeric``,
    ``numeric_imag``, ``predicted``, ``max_abs_error`` (max over the whole sorted spectrum and
    over every sector), ``sectors``, ``symmetric``, ``asymmetry_norm``; plus
    ``sector_leakage`` (largest leakage, see
    [`sector_spectra`][collapse_jax.spectral.sector_spectra]).
    """
    dim = state.x.shape[-1]
    J = jacobian(field, state, data.matrix())
    ev = eigenvalues(J)
    predicted_rows = sector_eigenvalues(data)
    spectra = sector_spectra(J, data, dim)
    sectors, errors, leak = {}, [], 0.0
    for name, pred in predicted_rows.items():
        pred_d = np.sort(np.repeat(pred, dim))
        num = spectra[name]["numeric"]
        errors.append(np.max(np.abs(num - pred_d), initial=0.0))
        leak = max(leak, spectra[name]["leakage"])
        sectors[name] = {"numeric": num.real.tolist(), "predicted": pred_d.tolist()}
    predicted = np.sort(np.concatenate([np.repeat(p, dim) for p in predicted_rows.values()]))
    errors.append(np.max(np.abs(ev - predicted)))
    return {
        "numeric": ev.real.tolist(),
        "numeric_imag": ev.imag.tolist(),
        "predicted": predicted.tolist(),
        "max_abs_error": float(max(errors)),
        "sectors": sectors,
        "symmetric": is_symmetric(J),
        "asymmetry_norm": asymmetry_norm(J),
        "sector_leakage": leak,
    }


# --- projection model (docs/theory.md §3) -------------------------------------------------------


def omega(W, per_class: float, shared: float) -> np.ndarray:
    """`Omega(W) = n / (2(n+M)) (I+W)(I+W^T W)^{-1}(I+W)^T` (docs/theory.md §3, P1), host float64.

    At a conservative fixed point the label bias obeys `(I - Omega) delta y_c = 0`; since
    `(I+W)(I+W^T W)^{-1}(I+W)^T = [I I] P_G [I; I]` with `P_G` a projector,
    `spec(Omega) ⊂ [0, n/(n+M)]`.
    """
    W = np.asarray(W, dtype=np.float64)
    eye = np.eye(W.shape[0])
    core = (eye + W) @ np.linalg.solve(eye + W.T @ W, (eye + W).T)
    return per_class / (2.0 * (per_class + shared)) * core


def omega_max_eigenvalue(W, per_class: float, shared: float) -> float:
    """Largest eigenvalue of [`omega`][collapse_jax.spectral.omega] (symmetric; bound `n/(n+M)`)."""
    om = omega(W, per_class, shared)
    return float(np.linalg.eigvalsh(0.5 * (om + om.T))[-1])


def label_span_spectrum(W, y) -> dict:
    """`W` restricted to the label span `span{y_c}` (docs/theory.md §3, P2).

    With `Q` an orthonormal basis of `span{y_c}` (rank-revealing SVD of `y`), returns
    ``eigenvalues`` of `Q^T W Q` (sorted by real part), ``rank`` and ``leakage``
    `|W Q - Q Q^T W Q|_F` (zero when the label span is `W`-invariant, as at a fixed point).
    """
    W = np.asarray(W, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    _, s, vt = np.linalg.svd(y, full_matrices=False)
    rank = int(np.sum(s > 1e-10 * max(s[0], 1e-300)))
    Q = vt[:rank].T
    Wr = Q.T @ W @ Q
    ev = np.linalg.eigvals(Wr)
    return {
        "eigenvalues": ev[np.argsort(ev.real)],
        "rank": rank,
        "leakage": float(np.linalg.norm(W @ Q - Q @ Wr)),
    }


def bias_sectors(W, y, per_class: float, shared: float, *, tol: float = 1e-6) -> list[dict]:
    """For each class-bias direction, the `W`-sector it sits in (docs/theory.md §3, P2).

    The bias directions are the right singular vectors `v_k` of the centred labels
    `y_c - ybar` (`K - 1` of them, spreads `sigma_k`). For each: the Rayleigh quotient
    `w_k = v_k^T W v_k`, the eigen-residual `|W v_k - w_k v_k|`, and the sector:
    ``"separated"`` if `|w_k - n/(n+M)| <= tol` and `sigma_k` is finite, ``"lost"`` if
    `|w_k| <= tol` or `sigma_k <= tol` (the direction's separation is gone or going),
    ``"other"`` otherwise (not at a fixed point of the separated type).
    """
    W = np.asarray(W, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    yc = y - y.mean(axis=0)
    _, s, vt = np.linalg.svd(yc, full_matrices=True)
    target = per_class / (per_class + shared)
    out = []
    for k in range(y.shape[0] - 1):
        sigma = float(s[k]) if k < s.size else 0.0
        v = vt[k] if k < vt.shape[0] else np.zeros(W.shape[0])
        w = float(v @ W @ v)
        resid = float(np.linalg.norm(W @ v - w * v))
        if sigma <= tol or abs(w) <= tol:
            sector = "lost"
        elif abs(w - target) <= tol and resid <= tol:
            sector = "separated"
        else:
            sector = "other"
        out.append({"spread": sigma, "w_rayleigh": w, "eigen_residual": resid, "sector": sector})
    return out


def projection_spectrum_report(state, data, *, zero_tol: float = 1e-7, sector_tol=1e-6) -> dict:
    """Spectral analysis of the projection model at one state (docs/theory.md §3).

    For both fields (``"conservative"``, ``"stop_gradient"``): Jacobian eigenvalues (real and
    imaginary parts, sorted by real part), their largest real part, the number of zero modes
    (`|lambda| <= zero_tol`), `|J - J^T|_F` and whether `J` is symmetric. For `W`: `|eig W|`
    sorted, `max eig Omega(W)` with its bound `n/(n+M)`, `W` on the label span and the sector
    of every bias direction ([`bias_sectors`][collapse_jax.spectral.bias_sectors]).
    """
    from .fields import vector_field
    from .losses import projection_loss

    A = data.matrix()
    n, M = data.per_class, float(data.shared_total)
    out = {}
    for name, sg in (("conservative", False), ("stop_gradient", True)):
        J = jacobian(vector_field(projection_loss, stop_gradient=sg), state, A)
        ev = eigenvalues(J)
        out[name] = {
            "real": ev.real,
            "imag": ev.imag,
            "max_real": float(ev.real.max()),
            "zero_modes": int(np.sum(np.abs(ev) <= zero_tol)),
            "asymmetry_norm": asymmetry_norm(J),
            "symmetric": is_symmetric(J),
        }
    W, y = np.asarray(state.W), np.asarray(state.y)
    span = label_span_spectrum(W, y)
    out.update(
        w_eigenvalues_abs=np.sort(np.abs(np.linalg.eigvals(W))),
        omega_max_eigenvalue=omega_max_eigenvalue(W, n, M),
        omega_bound=n / (n + M),
        label_span_w_eigenvalues=span["eigenvalues"],
        label_span_leakage=span["leakage"],
        bias_sectors=bias_sectors(W, y, n, M, tol=sector_tol),
    )
    return out


# the steady-state keys a projection spectrum reports besides the eigenvalues
_STEADY_KEYS = (
    "status",
    "branch",
    "residual_norm",
    "jacobian_max_real",
    "zero_modes",
    "n_variables",
    "min_l2",
    "w_eigenvalues_abs",
    "t_reached",
)


def steady_state_spectrum_report(
    field, analysis: dict, data: StandardData, *, stop_gradient: bool
) -> dict:
    """Jacobian spectrum of the projection model at a steady state (docs/theory.md §3).

    No closed form exists for the whole spectrum, so ``predicted`` is ``None`` and
    ``max_abs_error`` is the largest entry of `|J_autodiff - J_finite_differences|` (central
    differences, [`finite_difference_jacobian`][collapse_jax.spectral.finite_difference_jacobian]):
    the check that the reported Jacobian is right. ``sectors`` holds `W` on the label span of a
    separated stop-gradient fixed point, predicted `{1, n/(n+M) (K-1 times)}` (P2); it is empty
    otherwise.

    Args:
        field: the projection model's vector field (the one ``analysis`` was computed with).
        analysis: the output of
            [`projection_fixed_point`][collapse_jax.steady.projection_fixed_point], with its
            ``steady`` entry.
        data: the data set.
        stop_gradient: which field.

    Returns:
        The keys of ``collapse-jax spectrum --model projection --json`` (docs/cli.md) except the
        run's settings: ``numeric``, ``numeric_imag``, ``predicted``, ``max_abs_error``,
        ``max_abs_error_reference``, ``sectors``, ``symmetric``, ``asymmetry_norm`` and the
        steady state's ``status``, ``branch``, ``residual_norm``, ``jacobian_max_real``,
        ``zero_modes``, ``n_variables``, ``min_l2``, ``w_eigenvalues_abs``, ``t_reached``.
    """
    st = analysis["steady"]
    J_fd = finite_difference_jacobian(field, st.state, data.matrix())
    sectors = {}
    if stop_gradient and analysis["branch"] == "separated":
        n, M, K = data.per_class, float(data.shared_total), data.n_classes
        sectors["W_on_label_span"] = {
            "numeric": np.sort(analysis["label_span_w_eigenvalues"]),
            "predicted": np.sort([1.0] + [n / (n + M)] * (K - 1)),
        }
    ev = st.eigenvalues
    report = {
        "numeric": ev.real,
        "numeric_imag": ev.imag,
        "predicted": None,
        "max_abs_error": float(np.max(np.abs(st.jacobian - J_fd))),
        "max_abs_error_reference": "central finite differences of the field",
        "sectors": sectors,
        "symmetric": is_symmetric(st.jacobian),
        "asymmetry_norm": analysis["asymmetry_norm"],
    }
    report.update({key: analysis[key] for key in _STEADY_KEYS})
    return report
