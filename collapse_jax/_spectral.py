"""Jacobians, their spectra and the sector decomposition (docs/theory.md §2, §3).

Eigenvalues are always taken on the host CPU in float64 with numpy: the stop-gradient
Jacobian is not symmetric and JAX has no general ``eig`` on GPU. Jacobians of derived fields
come from autodiff of the field itself ([`VectorField`][collapse_jax.VectorField] is written
so that this is correct for stop-gradient fields too) and can be checked against
[`finite_difference_jacobian`][collapse_jax.finite_difference_jacobian].
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._data import StandardData

__all__ = [
    "jacobian",
    "finite_difference_jacobian",
    "eigenvalues",
    "asymmetry_norm",
    "is_symmetric",
    "sector_basis",
    "sector_spectra",
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
    [`jacobian`][collapse_jax.jacobian]). Error `O(step^2)` plus round-off
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
    [`sector_eigenvalues`][collapse_jax.sector_eigenvalues]. Sector II
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
