"""collapse_jax: the minimal model of representation collapse in JAX.

Flow: data (alignment matrices) -> losses -> fields -> integrate -> metrics; closed forms in
``exact``; Jacobian spectra in ``spectral``; steady states (integrate, polish, classify) in
``steady``; the N-independent reduction in ``reduced`` and the self-consistent solver in
``dmft``; sweeps in ``sweep``; collapse diagnostics of any embeddings in ``diagnostics``.
See ``docs/theory.md`` (shared) for the mathematics.
"""

import os

# Before numpy/scipy load OpenBLAS (JAX's CPU LU and eig run through scipy's LAPACK): the small
# dense LU solves of implicit solvers thrash with OpenBLAS threads on a few cores (measured here,
# 2 cores: a 280 x 280 float64 LU took 130-180 ms threaded, 1 ms single-threaded). A value the
# user set is kept. Import collapse_jax before numpy for it to take effect.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from ._types import EmbeddingState as EmbeddingState
from ._types import ProjectionState as ProjectionState
from ._types import TeacherStudentState as TeacherStudentState
from .data import StandardData as StandardData
from .data import TeacherStudentData as TeacherStudentData
from .data import TeacherStudentMoments as TeacherStudentMoments
from .data import frustration_data as frustration_data
from .data import init_embedding_state as init_embedding_state
from .data import init_projection_state as init_projection_state
from .data import init_teacher_student_state as init_teacher_student_state
from .data import shared_from_frustration as shared_from_frustration
from .data import standard_data as standard_data
from .data import teacher_student_data as teacher_student_data
from .diagnostics import EmbeddingStats as EmbeddingStats
from .diagnostics import alpha_req as alpha_req
from .diagnostics import class_means as class_means
from .diagnostics import collapse_verdict as collapse_verdict
from .diagnostics import diagnose as diagnose
from .diagnostics import diagnostics_from_stats as diagnostics_from_stats
from .diagnostics import embedding_stats as embedding_stats
from .diagnostics import merge_stats as merge_stats
from .diagnostics import min_l2_class_means as min_l2_class_means
from .diagnostics import n_components as n_components
from .diagnostics import nc1 as nc1
from .diagnostics import nc2 as nc2
from .diagnostics import ncm_accuracy as ncm_accuracy
from .diagnostics import ncm_counts as ncm_counts
from .diagnostics import participation_ratio as participation_ratio
from .diagnostics import rankme as rankme
from .diagnostics import singular_values as singular_values
from .diagnostics import std_l2_normalized as std_l2_normalized
from .diagnostics import stream_stats as stream_stats
from .diagnostics import trajectory_diagnostics as trajectory_diagnostics
from .dmft import DMFTResult as DMFTResult
from .dmft import solve_dmft as solve_dmft
from .exact import bias_propagator as bias_propagator
from .exact import exact_class_distances as exact_class_distances
from .exact import exact_min_l2 as exact_min_l2
from .exact import exact_solution as exact_solution
from .exact import lambda_pm as lambda_pm
from .exact import sector_eigenvalues as sector_eigenvalues
from .exact import teacher_student_exact_min_l2 as teacher_student_exact_min_l2
from .exact import teacher_student_hessian as teacher_student_hessian
from .exact import teacher_student_slow_rate as teacher_student_slow_rate
from .fields import VectorField as VectorField
from .fields import training_loss as training_loss
from .fields import vector_field as vector_field
from .integrate import default_solver as default_solver
from .integrate import log_times as log_times
from .integrate import simulate as simulate
from .integrate import train as train
from .losses import EMAPredictorState as EMAPredictorState
from .losses import EMAState as EMAState
from .losses import MechanismArgs as MechanismArgs
from .losses import embedding_loss as embedding_loss
from .losses import pair_sum as pair_sum
from .losses import projection_loss as projection_loss
from .losses import teacher_student_loss as teacher_student_loss
from .losses import teacher_student_projection_loss as teacher_student_projection_loss
from .mechanisms import MECHANISMS as MECHANISMS
from .mechanisms import EMAField as EMAField
from .mechanisms import Mechanism as Mechanism
from .mechanisms import get_mechanism as get_mechanism
from .mechanisms import mechanism_metrics as mechanism_metrics
from .metrics import class_distances as class_distances
from .metrics import fit_slow_rate as fit_slow_rate
from .metrics import min_l2 as min_l2
from .metrics import nearest_label_accuracy as nearest_label_accuracy
from .models import MODELS as MODELS
from .models import Model as Model
from .models import get_model as get_model
from .models import register as register
from .models.embedding import embedding_metrics as embedding_metrics
from .models.embedding import embedding_spectrum_report as embedding_spectrum_report
from .models.embedding import embedding_sweep as embedding_sweep
from .models.embedding import fitted_rates as fitted_rates
from .models.projection import BRANCHES as BRANCHES
from .models.projection import bias_sectors as bias_sectors
from .models.projection import classify_starts as classify_starts
from .models.projection import label_span_spectrum as label_span_spectrum
from .models.projection import omega as omega
from .models.projection import omega_max_eigenvalue as omega_max_eigenvalue
from .models.projection import projection_fixed_point as projection_fixed_point
from .models.projection import projection_metrics as projection_metrics
from .models.projection import projection_spectrum_report as projection_spectrum_report
from .models.projection import projection_sweep as projection_sweep
from .models.teacher_student import binary_accuracy_scale_free as binary_accuracy_scale_free
from .models.teacher_student import teacher_student_metrics as teacher_student_metrics
from .plots import teacher_student_figure as teacher_student_figure
from .projection import ProjectionRun as ProjectionRun
from .projection import simulate_projection as simulate_projection
from .reduced import ReducedParams as ReducedParams
from .reduced import ReducedState as ReducedState
from .reduced import moment_loss as moment_loss
from .reduced import reduce_state as reduce_state
from .reduced import reduced_field as reduced_field
from .reduced import reduced_params as reduced_params
from .spectral import asymmetry_norm as asymmetry_norm
from .spectral import eigenvalues as eigenvalues
from .spectral import finite_difference_jacobian as finite_difference_jacobian
from .spectral import is_symmetric as is_symmetric
from .spectral import jacobian as jacobian
from .spectral import sector_basis as sector_basis
from .spectral import sector_spectra as sector_spectra
from .steady import SteadyState as SteadyState
from .steady import find_steady_state as find_steady_state
from .steady import polish as polish
from .steady import residual_norm as residual_norm
from .teacher_student import TeacherStudentConfig as TeacherStudentConfig
from .teacher_student import run_teacher_student as run_teacher_student
from .teacher_student import teacher_student_member as teacher_student_member

try:
    __version__ = version("collapse_jax")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
