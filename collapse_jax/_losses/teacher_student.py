"""Linear teacher-student model (docs/theory.md §4), written on the data moments.

With `x_i = U xi_i` and the moments of
[`TeacherStudentMoments`][collapse_jax.TeacherStudentMoments] (`S = (1/P) sum_i xi_i xi_i^T`,
`mu_c = (1/P) sum_{i in c} xi_i`, `pi_c = P_c / P`), every sample sum expands (docs/theory.md §6) as

`(1/P) sum_i 1/2 |A xi_i - b_{c_i}|^2 = 1/2 tr(A S A^T) - sum_c b_c . (A mu_c)
+ 1/2 sum_c pi_c |b_c|^2`

for any matrix `A` and label vectors `b_c`. No `P x p` embedding array is built; the cost of a
loss (and of its gradient) is `O(p D^2)`.
"""

from .._data import TeacherStudentMoments
from .._types import Scalar, TeacherStudentState

__all__ = ["teacher_student_loss", "teacher_student_projection_loss", "mean_square_pairs"]


def mean_square_pairs(A, b, moments: TeacherStudentMoments) -> Scalar:
    """`(1/P) sum_i 1/2 |A xi_i - b_{c_i}|^2` from the moments (expanded form above).

    Args:
        A: `(q, D)` map applied to the inputs.
        b: `(2, q)` targets, row 0 for class `+1`.
        moments: the data moments.
    """
    S, mu, pi = moments
    quad = 0.5 * (A @ S * A).sum()
    cross = (b * (mu @ A.T)).sum()
    labels = 0.5 * (pi * (b * b).sum(axis=-1)).sum()
    return quad - cross + labels


def teacher_student_loss(
    state: TeacherStudentState, held: TeacherStudentState, moments: TeacherStudentMoments
) -> Scalar:
    """Plain loss `L = (1/P) sum_i 1/2 |U xi_i - y_{c_i}|^2` (docs/theory.md §4).

    Nothing is held fixed (``held`` unused): the field is `-grad L`, linear and conservative;
    its Hessian is `H_row (x) I_p` with `H_row = [[S, -mu_+, -mu_-], [-mu_+^T, pi_+, 0],
    [-mu_-^T, 0, pi_-]]` (see
    [`teacher_student_hessian`][collapse_jax.teacher_student_hessian]).
    """
    del held
    return mean_square_pairs(state.U, state.y, moments)


def teacher_student_projection_loss(
    state: TeacherStudentState, held: TeacherStudentState, moments: TeacherStudentMoments
) -> Scalar:
    """Projection variant (docs/theory.md §3 construction with `x_i = U xi_i`, §4):

    `L = (1/P) sum_i 1/2 [ |W U xi_i - h(y_{c_i})|^2 + |y_{c_i} - h(U) xi_i|^2 ]`.

    `h(.)` reads the held slot: the label in the predictor term and the student map in the
    direct term. With ``held = state`` this is the conservative loss; the stop-gradient field
    differentiates the first slot only
    ([`vector_field`][collapse_jax.vector_field]).
    """
    # predictor branch: W and U learn towards the held labels
    predictor = mean_square_pairs(state.W @ state.U, held.y, moments)
    # direct branch: the labels learn towards the held embeddings U xi
    direct = mean_square_pairs(held.U, state.y, moments)
    return predictor + direct
