"""collapse_jax: the minimal model of representation collapse in JAX.

Flow: data (alignment matrices) -> losses -> fields -> integrate -> metrics; closed forms in
``exact``; Jacobian spectra in ``spectral``; steady states (integrate, polish, classify) in
``steady``. See ``MODEL.md`` (shared) for the mathematics.
"""

from importlib.metadata import PackageNotFoundError, version

from ._types import EmbeddingState as EmbeddingState
from ._types import ProjectionState as ProjectionState
from .data import StandardData as StandardData
from .data import frustration_data as frustration_data
from .data import init_embedding_state as init_embedding_state
from .data import init_projection_state as init_projection_state
from .data import shared_from_frustration as shared_from_frustration
from .data import standard_data as standard_data
from .exact import bias_propagator as bias_propagator
from .exact import exact_class_distances as exact_class_distances
from .exact import exact_min_l2 as exact_min_l2
from .exact import exact_solution as exact_solution
from .exact import lambda_pm as lambda_pm
from .exact import sector_eigenvalues as sector_eigenvalues
from .fields import VectorField as VectorField
from .fields import training_loss as training_loss
from .fields import vector_field as vector_field
from .integrate import default_solver as default_solver
from .integrate import log_times as log_times
from .integrate import simulate as simulate
from .losses import embedding_loss as embedding_loss
from .losses import pair_sum as pair_sum
from .losses import projection_loss as projection_loss
from .metrics import class_distances as class_distances
from .metrics import embedding_metrics as embedding_metrics
from .metrics import fit_slow_rate as fit_slow_rate
from .metrics import min_l2 as min_l2
from .metrics import nearest_label_accuracy as nearest_label_accuracy
from .metrics import projection_metrics as projection_metrics
from .spectral import asymmetry_norm as asymmetry_norm
from .spectral import bias_sectors as bias_sectors
from .spectral import eigenvalues as eigenvalues
from .spectral import embedding_spectrum_report as embedding_spectrum_report
from .spectral import finite_difference_jacobian as finite_difference_jacobian
from .spectral import is_symmetric as is_symmetric
from .spectral import jacobian as jacobian
from .spectral import label_span_spectrum as label_span_spectrum
from .spectral import omega as omega
from .spectral import omega_max_eigenvalue as omega_max_eigenvalue
from .spectral import projection_spectrum_report as projection_spectrum_report
from .spectral import sector_basis as sector_basis
from .spectral import sector_spectra as sector_spectra
from .steady import BRANCHES as BRANCHES
from .steady import SteadyState as SteadyState
from .steady import classify_starts as classify_starts
from .steady import find_steady_state as find_steady_state
from .steady import polish as polish
from .steady import projection_fixed_point as projection_fixed_point
from .steady import residual_norm as residual_norm

try:
    __version__ = version("collapse_jax")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
