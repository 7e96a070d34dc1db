"""Losses, one module per model. Signature: ``loss(state, held, A) -> scalar``."""

from ._pairs import pair_sum as pair_sum
from .embedding import embedding_loss as embedding_loss
from .projection import projection_loss as projection_loss
