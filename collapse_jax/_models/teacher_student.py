"""The linear teacher–student model (docs/theory.md §4): its metrics.

Data, loss, field and runs: [`run_teacher_student`][collapse_jax.run_teacher_student]; its
Hessian and slow rate: [`teacher_student_hessian`][collapse_jax.teacher_student_hessian].
"""

from __future__ import annotations

import jax.numpy as jnp

from .._metrics import ROUNDOFF_FACTOR
from .._types import Array, Float

__all__ = ["binary_accuracy_scale_free", "teacher_student_metrics"]


def binary_accuracy_scale_free(state, data) -> Float[Array, ""]:
    """Nearest-label training accuracy of the teacher-student model, scale-free (docs/theory.md §4).

    Sample `i` (label `c_i = ±1`) is correct when its prediction `yhat_i = U xi_i` (plain) or
    `W U xi_i` (projection) is strictly nearer to `y_{c_i}` than to the other label. That is
    `c_i (yhat_i - ybar) . (y_+ - y_-) > 0` (ties count as wrong), a test invariant under
    `(U, y) -> a (U, y)`; it is evaluated after dividing `U` and `y` by their largest entry, so
    no product underflows while the state itself is representable (a float64 run that squared
    unnormalised distances fell to a tie, accuracy 0.5, docs/theory.md §4). NaN when the state is
    zero or not finite, or when the relative separation `MinL2 / scale` is at the round-off floor
    ([`ROUNDOFF_FACTOR`][collapse_jax.ROUNDOFF_FACTOR] `* eps`), where the sign is an
    artefact.
    """
    U, y = state.U, state.y
    scale = jnp.maximum(jnp.max(jnp.abs(U)), jnp.max(jnp.abs(y)))
    ok = jnp.isfinite(scale) & (scale > 0)
    safe = jnp.where(ok, scale, 1.0)
    U, y = U / safe, y / safe
    A = U if state.W is None else state.W @ U
    pred = data.xi @ A.T  # (P, p)
    ybar = 0.5 * (y[0] + y[1])
    delta = y[0] - y[1]
    margin = data.labels * ((pred - ybar) @ delta)
    acc = jnp.mean((margin > 0).astype(pred.dtype))
    eps = jnp.finfo(pred.dtype).eps
    rel = jnp.linalg.norm(delta) / jnp.maximum(1.0, jnp.max(jnp.abs(y)))
    ok = ok & (rel > ROUNDOFF_FACTOR * eps)
    return jnp.where(ok, acc, jnp.nan)


def teacher_student_metrics(state, data, loss) -> dict[str, Float[Array, ""]]:
    """MinL2 `= |y_+ - y_-|`, scale-free accuracy and loss of one teacher-student state.

    Args:
        state: [`TeacherStudentState`][collapse_jax.TeacherStudentState].
        data: [`TeacherStudentData`][collapse_jax.TeacherStudentData].
        loss: the model's ``loss(state, held, moments)``; evaluated at ``held = state``.

    `vmap` over a leading time axis of ``state`` for a trajectory (docs/theory.md §4).
    """
    return {
        "min_l2": jnp.linalg.norm(state.y[0] - state.y[1]),
        "accuracy": binary_accuracy_scale_free(state, data),
        "loss": loss(state, state, data.moments()),
    }
