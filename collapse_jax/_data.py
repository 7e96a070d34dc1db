"""The data layer: alignment matrices and frustration masks (docs/theory.md §1).

The standard data set has `n` clean samples per class (row `e_c` of the alignment matrix `A`)
followed by a block of *shared* rows (all-ones rows: aligned with every class). Shapes must be
static under `jit`/`vmap`, so a sweep over the frustration ratio keeps the number of shared
rows fixed (``max_shared``) and changes which of them are active and with what weight.

Rule for mapping a frustration ratio `phi` to shared rows (the toolkit always reports the `M`
it used, see [`StandardData.shared_total`][collapse_jax.StandardData.shared_total]):

* ``"round"`` (default): `M = round(phi K n / (1 - phi))` shared rows are active with weight 1,
  the rest are inactive (weight 0). Every closed form of docs/theory.md §2 holds exactly.
* ``"spread"``: every one of the ``max_shared`` rows is active with weight
  `w = M / max_shared`, `M = phi K n / (1 - phi)` unrounded. The total shared weight is `M`, so
  sector II (`lambda_pm`, the collapse rate) holds with that `M`; sectors I and III use `w`
  (see [`sector_eigenvalues`][collapse_jax.sector_eigenvalues]).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._types import (
    Alignment,
    Array,
    EmbeddingState,
    Float,
    PRNGKeyArray,
    ProjectionState,
    TeacherStudentState,
)

__all__ = [
    "StandardData",
    "standard_data",
    "frustration_data",
    "shared_from_frustration",
    "init_embedding_state",
    "TeacherStudentData",
    "TeacherStudentMoments",
    "teacher_student_data",
    "init_teacher_student_state",
    "init_projection_state",
]

ShareRule = Literal["round", "spread"]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_frustration(name: str, phi) -> float:
    phi = float(phi)
    if not math.isfinite(phi) or not 0.0 <= phi < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {phi}")
    return phi


class StandardData(eqx.Module):
    """The standard data set with a fixed-shape block of shared rows.

    Attributes:
        n_classes: `K`, static.
        per_class: `n`, clean samples per class, static.
        shared_mask: `(max_shared,)` array of 0/1, which shared rows are active.
        shared_weight: scalar weight `w` of every active shared row.

    The alignment matrix is `A = [[I_K ⊗ 1_n], [w * mask ⊗ 1_K]]`, of shape
    `(K n + max_shared, K)`. All array fields may carry a leading batch axis under `vmap`.
    """

    n_classes: int = eqx.field(static=True)
    per_class: int = eqx.field(static=True)
    shared_mask: Float[Array, " max_shared"]
    shared_weight: Float[Array, ""]

    @property
    def max_shared(self) -> int:
        return self.shared_mask.shape[-1]

    @property
    def n_samples(self) -> int:
        return self.n_classes * self.per_class + self.max_shared

    @property
    def shared_count(self) -> Float[Array, ""]:
        """Number of active shared rows `m`."""
        return jnp.sum(self.shared_mask, axis=-1)

    @property
    def shared_total(self) -> Float[Array, ""]:
        """Total shared weight `M = w m`: the `M` of every closed form."""
        return self.shared_weight * self.shared_count

    @property
    def labels(self) -> np.ndarray:
        """Class index of every clean sample, `(K n,)` (shared rows have no class)."""
        return np.repeat(np.arange(self.n_classes), self.per_class)

    def matrix(self) -> Alignment:
        """The alignment matrix `A` of shape `(N, K)` (docs/theory.md §1)."""
        K, n = self.n_classes, self.per_class
        dtype = self.shared_mask.dtype
        clean = jnp.repeat(jnp.eye(K, dtype=dtype), n, axis=0)
        shared = jnp.broadcast_to(
            (self.shared_weight * self.shared_mask)[:, None], (self.max_shared, K)
        )
        return jnp.concatenate([clean, shared], axis=0)


def _float_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def standard_data(
    n_classes: int, per_class: int, shared: int, *, max_shared: int | None = None
) -> StandardData:
    """The standard data set: `n` clean samples per class and `M` shared samples.

    Args:
        n_classes: `K >= 2`.
        per_class: `n >= 1`.
        shared: `M >= 0`, number of active shared samples (weight 1).
        max_shared: number of shared rows to allocate (default `M`); rows beyond `M` are
            inactive. Use it to give several data sets one shape.
    """
    K = _check_int("n_classes", n_classes, 2)
    n = _check_int("per_class", per_class, 1)
    M = _check_int("shared", shared, 0)
    rows = M if max_shared is None else _check_int("max_shared", max_shared, 0)
    if rows < M:
        raise ValueError(f"max_shared must be >= shared={M}, got {rows}")
    dtype = _float_dtype()
    mask = (jnp.arange(rows) < M).astype(dtype)
    return StandardData(K, n, mask, jnp.asarray(1.0, dtype))


def shared_from_frustration(n_classes: int, per_class: int, frustration):
    """`M = phi K n / (1 - phi)`, unrounded (docs/theory.md §1): the one frustration -> `M` rule.

    A Python float for a scalar ratio, a float64 array of the same shape for an array of them.

    Raises:
        ValueError: if a ratio is outside `[0, 1)`.
    """
    if np.ndim(frustration) == 0:
        phi = _check_frustration("frustration", frustration)
        return phi * n_classes * per_class / (1.0 - phi)
    phis = np.asarray(frustration, dtype=np.float64)
    for phi in phis.ravel():
        _check_frustration("frustration", phi)
    return phis * n_classes * per_class / (1.0 - phis)


def frustration_data(
    n_classes: int,
    per_class: int,
    frustration,
    *,
    max_shared: int,
    rule: ShareRule = "round",
) -> StandardData:
    """A standard data set realising frustration ratio `phi` with fixed shapes.

    Works on a Python float or on an array of ratios (then every array field gets a leading
    batch axis, ready for `vmap`). See the module docstring for the two rules.

    Raises:
        ValueError: if a ratio is outside `[0, 1)` or needs more than ``max_shared`` rows.
    """
    K = _check_int("n_classes", n_classes, 2)
    n = _check_int("per_class", per_class, 1)
    # the ratios first: a ratio outside [0, 1) is named as such, not as a max_shared it implies
    phis = np.atleast_1d(np.asarray(frustration, dtype=np.float64))
    M = shared_from_frustration(K, n, phis)
    rows = _check_int("max_shared", max_shared, 0)
    if rule not in ("round", "spread"):
        raise ValueError(f"rule must be 'round' or 'spread', got {rule!r}")
    dtype = _float_dtype()
    if rule == "round":
        m = np.round(M)
        if np.any(m > rows):
            raise ValueError(
                f"max_shared={rows} is too small: frustration {phis.max()} needs "
                f"{int(m.max())} shared rows"
            )
        mask = (np.arange(rows)[None, :] < m[:, None]).astype(np.float64)
        weight = np.ones_like(M)
    else:
        if rows == 0 and np.any(M > 0):
            raise ValueError("max_shared must be >= 1 for rule='spread' with frustration > 0")
        mask = np.ones((phis.size, rows))
        weight = M / max(rows, 1)
    if np.ndim(frustration) == 0:
        mask, weight = mask[0], weight[0]
    return StandardData(K, n, jnp.asarray(mask, dtype), jnp.asarray(weight, dtype))


def init_embedding_state(
    key: PRNGKeyArray, n_samples: int, n_classes: int, dim: int
) -> EmbeddingState:
    """Default initial state (docs/theory.md §1): `x ~ N(0, 1)`, `y ~ 2 N(0, 1)`."""
    N = _check_int("n_samples", n_samples, 1)
    K = _check_int("n_classes", n_classes, 2)
    d = _check_int("dim", dim, 1)
    kx, ky = jax.random.split(key)
    dtype = _float_dtype()
    x = jax.random.normal(kx, (N, d), dtype)
    y = 2.0 * jax.random.normal(ky, (K, d), dtype)
    return EmbeddingState(x, y)


# --- Linear teacher-student model (docs/theory.md §4) ---------------------------------------------


class TeacherStudentMoments(NamedTuple):
    """Data moments that the teacher-student losses need (docs/theory.md §4, §6).

    Every loss of the model is a quadratic form in the student state, so the `P x D` inputs
    enter only through
    `second = (1/P) sum_i xi_i xi_i^T` (`D x D`), `first[c] = (1/P) sum_{i in c} xi_i`
    (`2 x D`, row 0 the class `+1`) and `weight[c] = P_c / P` (`2,`).
    """

    second: Float[Array, "input input"]
    first: Float[Array, "2 input"]
    weight: Float[Array, " 2"]


class TeacherStudentData(eqx.Module):
    """Inputs of the linear teacher-student model (docs/theory.md §4), fixed shapes.

    Attributes:
        xi: inputs `(P, D)`: `xi_i = s_i m w* + sigma z_i` with `s_i = c_i` for a clean sample
            and `s_i = -c_i` for a frustrated one.
        labels: `c_i in {+1, -1}`, `(P,)`; the first `P/2` samples are `+1`.
        frustrated: `(P,)` 0/1 mask of the samples moved to the opposite peak.
        teacher: the unit teacher `w*`, `(D,)`.

    All fields may carry a leading batch axis under `vmap`.
    """

    xi: Float[Array, "samples input"]
    labels: Float[Array, " samples"]
    frustrated: Float[Array, " samples"]
    teacher: Float[Array, " input"]

    @property
    def frustration_realised(self) -> Float[Array, ""]:
        """Fraction of samples that are frustrated (equal in both classes by construction)."""
        return jnp.mean(self.frustrated, axis=-1)

    def moments(self) -> TeacherStudentMoments:
        """[`TeacherStudentMoments`][collapse_jax.TeacherStudentMoments] of the inputs (cost
        `O(P D^2)`, once per data set)."""
        return _moments(self.xi, self.labels)

    def batch_moments(self, key: PRNGKeyArray, batch_size: int) -> TeacherStudentMoments:
        """Moments of a minibatch of ``batch_size`` samples drawn without replacement.

        Normalised by the batch size (`(1/B) sum_{i in batch}`), so the loss on these moments
        is the minibatch mean loss: an unbiased estimate of the full loss and gradient. For
        stochastic training with [`train`][collapse_jax.train]
        (``sample_args``).
        """
        B = _check_int("batch_size", batch_size, 1)
        P = self.xi.shape[-2]
        if B > P:
            raise ValueError(f"batch_size must be <= n_samples={P}, got {B}")
        idx = jax.random.choice(key, P, (B,), replace=False)
        return _moments(self.xi[..., idx, :], self.labels[..., idx])


def _moments(xi, labels) -> TeacherStudentMoments:
    B = xi.shape[-2]
    plus = (labels > 0).astype(xi.dtype)
    cls = jnp.stack([plus, 1.0 - plus], axis=-2)  # (2, B)
    second = jnp.einsum("...pi,...pj->...ij", xi, xi) / B
    first = jnp.einsum("...cp,...pi->...ci", cls, xi) / B
    return TeacherStudentMoments(second, first, jnp.sum(cls, axis=-1) / B)


def _check_positive_float(name: str, value) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def teacher_student_data(
    key: PRNGKeyArray,
    frustration=0.0,
    *,
    dim: int = 100,
    n_samples: int = 400,
    margin: float = 2.0,
    noise: float = 1.0,
) -> TeacherStudentData:
    """Teacher-student inputs from a key (docs/theory.md §4).

    `w* = g / |g|` with `g ~ N(0, I_D)`; `P/2` samples of class `+1` then `P/2` of class `-1`;
    `xi_i = s_i m w* + sigma z_i`, `z_i ~ N(0, I_D)`.

    Frustration rule (rank rule, fixed shapes, so ``frustration`` may be a traced value under
    `vmap`/`jit`): every sample gets a uniform draw `u_i` from the key; within each class the
    `round(f P/2)` samples of smallest `u_i` are frustrated (`s_i = -c_i`: they keep their label
    but sit at the opposite peak). The realised fraction is therefore `round(f P/2) / (P/2)` in
    each class (reported by
    [`TeacherStudentData.frustration_realised`][collapse_jax.TeacherStudentData.frustration_realised]),
    the frustrated sets are nested as `f` grows, and the noise `z` and teacher do not depend on `f`.

    Args:
        key: PRNG key (the seed).
        frustration: `f` in `[0, 0.5)`; a Python float is checked, a traced value is not.
        dim: input dimension `D` (default 100).
        n_samples: `P`, even (default 400).
        margin: peak distance `m` (default 2).
        noise: `sigma` (default 1).
    """
    D = _check_int("dim", dim, 1)
    P = _check_int("n_samples", n_samples, 2)
    if P % 2:
        raise ValueError(f"n_samples must be even (balanced classes), got {P}")
    m = float(margin)
    if not math.isfinite(m):
        raise ValueError(f"margin must be a finite number, got {margin}")
    sigma = _check_positive_float("noise", noise)
    if isinstance(frustration, (int, float, np.floating, np.integer)):
        f = float(frustration)
        if not (math.isfinite(f) and 0.0 <= f < 0.5):
            raise ValueError(f"frustration must lie in [0, 0.5), got {f}")
    dtype = _float_dtype()
    kt, kz, ku = jax.random.split(key, 3)
    g = jax.random.normal(kt, (D,), dtype)
    teacher = g / jnp.linalg.norm(g)
    z = jax.random.normal(kz, (P, D), dtype)
    half = P // 2
    u = jax.random.uniform(ku, (2, half), dtype)
    rank = jnp.argsort(jnp.argsort(u, axis=1), axis=1)  # 0 = smallest draw, within each class
    count = jnp.round(jnp.asarray(frustration, dtype) * half)
    frustrated = (rank < count).astype(dtype).reshape(P)
    labels = jnp.repeat(jnp.asarray([1.0, -1.0], dtype), half)
    side = labels * (1.0 - 2.0 * frustrated)
    xi = side[:, None] * (m * teacher)[None, :] + sigma * z
    return TeacherStudentData(xi, labels, frustrated, teacher)


def init_teacher_student_state(
    key: PRNGKeyArray, dim: int = 100, student_dim: int = 5, *, projection: bool = False
) -> TeacherStudentState:
    """Default initial state (docs/theory.md §4): `U ~ N(0, 1/D)` entries, `y_± ~ N(0, I_p)`,
    and for the projection variant `W = I + 0.1 N(0, 1)`.

    The key is split into three whatever the variant, so `U` and `y` of one seed are the same
    for the plain and the projection model.
    """
    D = _check_int("dim", dim, 1)
    p = _check_int("student_dim", student_dim, 1)
    dtype = _float_dtype()
    ku, ky, kw = jax.random.split(key, 3)
    U = jax.random.normal(ku, (p, D), dtype) / math.sqrt(D)
    y = jax.random.normal(ky, (2, p), dtype)
    W = jnp.eye(p, dtype=dtype) + 0.1 * jax.random.normal(kw, (p, p), dtype) if projection else None
    return TeacherStudentState(U, y, W)


def init_projection_state(
    key: PRNGKeyArray, n_samples: int, n_classes: int, dim: int
) -> ProjectionState:
    """Default initial state of the projection model (docs/theory.md §1).

    `x ~ N(0, 1)`, `y ~ 2 N(0, 1)` exactly as
    [`init_embedding_state`][collapse_jax.init_embedding_state] draws them from ``key`` (so
    both models start from the same embeddings for one seed), and `W = I + 0.1 N(0, 1)` drawn from
    ``jax.random.fold_in(key, 1)``.
    """
    base = init_embedding_state(key, n_samples, n_classes, dim)
    d = base.x.shape[-1]
    noise = jax.random.normal(jax.random.fold_in(key, 1), (d, d), base.x.dtype)
    return ProjectionState(base.x, base.y, jnp.eye(d, dtype=base.x.dtype) + 0.1 * noise)
