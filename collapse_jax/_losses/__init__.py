"""Losses, one module per model. Signature: ``loss(state, held, A) -> scalar``."""

from ._pairs import pair_sum as pair_sum
from .embedding import embedding_loss as embedding_loss
from .mechanisms import EMAPredictorState as EMAPredictorState
from .mechanisms import EMAState as EMAState
from .mechanisms import MechanismArgs as MechanismArgs
from .mechanisms import ema_loss as ema_loss
from .mechanisms import ema_predictor_loss as ema_predictor_loss
from .mechanisms import infonce_loss as infonce_loss
from .mechanisms import mse_loss as mse_loss
from .mechanisms import predictor_loss as predictor_loss
from .mechanisms import vicreg_loss as vicreg_loss
from .projection import projection_loss as projection_loss
from .teacher_student import mean_square_pairs as mean_square_pairs
from .teacher_student import teacher_student_loss as teacher_student_loss
from .teacher_student import teacher_student_projection_loss as teacher_student_projection_loss
