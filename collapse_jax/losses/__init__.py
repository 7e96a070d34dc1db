"""Losses, one module per model. Signature: ``loss(state, held, A) -> scalar``."""

from ._pairs import pair_sum as pair_sum
from .embedding import embedding_loss as embedding_loss
from .projection import projection_loss as projection_loss
from .teacher_student import mean_square_pairs as mean_square_pairs
from .teacher_student import teacher_student_loss as teacher_student_loss
from .teacher_student import teacher_student_projection_loss as teacher_student_projection_loss
