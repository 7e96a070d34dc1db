"""collapse_jax: the minimal model of representation collapse in JAX.

Every public name is exported here (``__all__``); the modules behind them are private, as in
diffrax and equinox, and ``docs/index.md`` ("How the code is organised") lists them a line
each. Flow: data (alignment matrices) -> losses (one held-slot loss per model) -> fields
(``jax.grad``) -> integrate (diffrax) -> metrics; closed forms, spectra, steady states, the
exact N-independent reduction and the self-consistent solver on top; one registry of models
(``MODELS``, ``register``); one sweep engine (``run_grid``). ``collapse_jax.reproduce`` (the
reproduction driver) and ``collapse_jax.cli`` (the ``collapse-jax`` command) are the two
applications built on it. The mathematics is in ``docs/theory.md``.
"""

from importlib.metadata import PackageNotFoundError, version

from . import _deprecated, _threads
from ._cache import enable_compilation_cache as enable_compilation_cache
from ._collapse_metrics import alpha_req as alpha_req
from ._collapse_metrics import class_means as class_means
from ._collapse_metrics import min_l2_class_means as min_l2_class_means
from ._collapse_metrics import n_components as n_components
from ._collapse_metrics import nc1 as nc1
from ._collapse_metrics import nc2 as nc2
from ._collapse_metrics import ncm_accuracy as ncm_accuracy
from ._collapse_metrics import ncm_counts as ncm_counts
from ._collapse_metrics import participation_ratio as participation_ratio
from ._collapse_metrics import rankme as rankme
from ._collapse_metrics import singular_values as singular_values
from ._collapse_metrics import std_l2_normalized as std_l2_normalized
from ._comparison import DIAGNOSTIC_KEYS as DIAGNOSTIC_KEYS
from ._comparison import classify as classify
from ._comparison import compare_mechanisms as compare_mechanisms
from ._comparison import default_optimizers as default_optimizers
from ._comparison import fixed_point_analysis as fixed_point_analysis
from ._comparison import mechanism_member as mechanism_member
from ._comparison import mechanism_sweep as mechanism_sweep
from ._comparison import separation_table as separation_table
from ._comparison import train_mechanism as train_mechanism
from ._comparison import training_comparison as training_comparison
from ._data import StandardData as StandardData
from ._data import TeacherStudentData as TeacherStudentData
from ._data import TeacherStudentMoments as TeacherStudentMoments
from ._data import frustration_data as frustration_data
from ._data import init_embedding_state as init_embedding_state
from ._data import init_projection_state as init_projection_state
from ._data import init_teacher_student_state as init_teacher_student_state
from ._data import shared_from_frustration as shared_from_frustration
from ._data import standard_data as standard_data
from ._data import teacher_student_data as teacher_student_data
from ._diagnostics import COLLAPSE_RULE as COLLAPSE_RULE
from ._diagnostics import EmbeddingStats as EmbeddingStats
from ._diagnostics import collapse_verdict as collapse_verdict
from ._diagnostics import diagnose as diagnose
from ._diagnostics import diagnostics_from_stats as diagnostics_from_stats
from ._diagnostics import embedding_stats as embedding_stats
from ._diagnostics import merge_stats as merge_stats
from ._diagnostics import stream_stats as stream_stats
from ._diagnostics import trajectory_diagnostics as trajectory_diagnostics
from ._dmft import DMFTResult as DMFTResult
from ._dmft import compare_with_direct as compare_with_direct
from ._dmft import dmft_report as dmft_report
from ._dmft import solve_dmft as solve_dmft
from ._exact import bias_propagator as bias_propagator
from ._exact import compare_with_exact as compare_with_exact
from ._exact import exact_class_distances as exact_class_distances
from ._exact import exact_min_l2 as exact_min_l2
from ._exact import exact_solution as exact_solution
from ._exact import global_matrix as global_matrix
from ._exact import lambda_pm as lambda_pm
from ._exact import sector_eigenvalues as sector_eigenvalues
from ._fields import VectorField as VectorField
from ._fields import training_loss as training_loss
from ._fields import vector_field as vector_field
from ._fixed_points import mechanism_fixed_point as mechanism_fixed_point
from ._fixed_points import predicted_zero_modes as predicted_zero_modes
from ._imex import AbstractStageSolveARK as AbstractStageSolveARK
from ._imex import StageSolveKenCarp3 as StageSolveKenCarp3
from ._imex import StageSolveKenCarp4 as StageSolveKenCarp4
from ._imex import StageSolveKenCarp5 as StageSolveKenCarp5
from ._integrate import DEFAULT_ATOL as DEFAULT_ATOL
from ._integrate import DEFAULT_RTOL as DEFAULT_RTOL
from ._integrate import default_solver as default_solver
from ._integrate import log_times as log_times
from ._integrate import result_name as result_name
from ._integrate import simulate as simulate
from ._integrate import train as train
from ._losses import EMAPredictorState as EMAPredictorState
from ._losses import EMAState as EMAState
from ._losses import MechanismArgs as MechanismArgs
from ._losses import embedding_loss as embedding_loss
from ._losses import pair_sum as pair_sum
from ._losses import projection_loss as projection_loss
from ._losses import teacher_student_loss as teacher_student_loss
from ._losses import teacher_student_projection_loss as teacher_student_projection_loss
from ._losses.mechanisms import ema_loss as ema_loss
from ._losses.mechanisms import ema_predictor_loss as ema_predictor_loss
from ._losses.mechanisms import infonce_loss as infonce_loss
from ._losses.mechanisms import mse_loss as mse_loss
from ._losses.mechanisms import predictor_loss as predictor_loss
from ._losses.mechanisms import sample_presence as sample_presence
from ._losses.mechanisms import smooth_hinge as smooth_hinge
from ._losses.mechanisms import squared_distances as squared_distances
from ._losses.mechanisms import vicreg_loss as vicreg_loss
from ._losses.mechanisms import vicreg_terms as vicreg_terms
from ._losses.teacher_student import mean_square_pairs as mean_square_pairs
from ._mechanisms import MECHANISMS as MECHANISMS
from ._mechanisms import EMAField as EMAField
from ._mechanisms import Mechanism as Mechanism
from ._mechanisms import get_mechanism as get_mechanism
from ._mechanisms import mechanism_metrics as mechanism_metrics
from ._metrics import ROUNDOFF_FACTOR as ROUNDOFF_FACTOR
from ._metrics import class_distances as class_distances
from ._metrics import fit_fast_rate as fit_fast_rate
from ._metrics import fit_slow_rate as fit_slow_rate
from ._metrics import min_l2 as min_l2
from ._metrics import nearest_label_accuracy as nearest_label_accuracy
from ._metrics import roundoff_floor as roundoff_floor
from ._models import MODELS as MODELS
from ._models import Model as Model
from ._models import embedding_spectrum as embedding_spectrum
from ._models import get_model as get_model
from ._models import label_metrics as label_metrics
from ._models import register as register
from ._models.embedding import embedding_member as embedding_member
from ._models.embedding import embedding_metrics as embedding_metrics
from ._models.embedding import embedding_run_report as embedding_run_report
from ._models.embedding import embedding_spectrum_report as embedding_spectrum_report
from ._models.embedding import embedding_sweep as embedding_sweep
from ._models.embedding import fitted_rates as fitted_rates
from ._models.mechanisms import ema_bias_matrix as ema_bias_matrix
from ._models.mechanisms import init_ema_predictor_state as init_ema_predictor_state
from ._models.mechanisms import init_ema_state as init_ema_state
from ._models.network import ACTIVATIONS as ACTIVATIONS
from ._models.network import VARIANTS as VARIANTS
from ._models.network import Encoder as Encoder
from ._models.network import NetworkArgs as NetworkArgs
from ._models.network import init_encoder as init_encoder
from ._models.network import network_loss as network_loss
from ._models.network import network_metrics as network_metrics
from ._models.network import network_row as network_row
from ._models.network import network_start as network_start
from ._models.projection import BRANCHES as BRANCHES
from ._models.projection import PROJECTION_SWEEP_ATOL as PROJECTION_SWEEP_ATOL
from ._models.projection import PROJECTION_SWEEP_RTOL as PROJECTION_SWEEP_RTOL
from ._models.projection import bias_sectors as bias_sectors
from ._models.projection import classify_starts as classify_starts
from ._models.projection import label_span_spectrum as label_span_spectrum
from ._models.projection import omega as omega
from ._models.projection import omega_max_eigenvalue as omega_max_eigenvalue
from ._models.projection import projection_fixed_point as projection_fixed_point
from ._models.projection import projection_member as projection_member
from ._models.projection import projection_metrics as projection_metrics
from ._models.projection import projection_spectrum_report as projection_spectrum_report
from ._models.projection import projection_sweep as projection_sweep
from ._models.projection import steady_state_spectrum_report as steady_state_spectrum_report
from ._models.teacher_student import TS_ATOL as TS_ATOL
from ._models.teacher_student import TS_FIT_FLOOR as TS_FIT_FLOOR
from ._models.teacher_student import TS_RTOL as TS_RTOL
from ._models.teacher_student import TeacherStudentConfig as TeacherStudentConfig
from ._models.teacher_student import accuracy_summary as accuracy_summary
from ._models.teacher_student import binary_accuracy_scale_free as binary_accuracy_scale_free
from ._models.teacher_student import run_teacher_student as run_teacher_student
from ._models.teacher_student import scale_summary as scale_summary
from ._models.teacher_student import teacher_student_exact_min_l2 as teacher_student_exact_min_l2
from ._models.teacher_student import teacher_student_hessian as teacher_student_hessian
from ._models.teacher_student import teacher_student_member as teacher_student_member
from ._models.teacher_student import teacher_student_metrics as teacher_student_metrics
from ._models.teacher_student import teacher_student_problem as teacher_student_problem
from ._models.teacher_student import teacher_student_slow_rate as teacher_student_slow_rate
from ._network import DEFAULT_LR as DEFAULT_LR
from ._network import OPTIMIZERS as OPTIMIZERS
from ._network import RECORDED as RECORDED
from ._network import NetworkConfig as NetworkConfig
from ._network import NetworkSweep as NetworkSweep
from ._network import fit_late_decay as fit_late_decay
from ._network import network_member as network_member
from ._network import network_optimizer as network_optimizer
from ._network import network_run as network_run
from ._network import network_steps as network_steps
from ._network import network_summary as network_summary
from ._network import network_sweep as network_sweep
from ._network_data import DATASETS as DATASETS
from ._network_data import NetworkData as NetworkData
from ._network_data import digits_data as digits_data
from ._network_data import load_network_npz as load_network_npz
from ._network_data import network_alignment as network_alignment
from ._network_data import network_data as network_data
from ._network_data import with_frustration as with_frustration
from ._network_study import encoder_kernel_overlap as encoder_kernel_overlap
from ._network_study import local_exponent as local_exponent
from ._network_study import minimal_model_comparison as minimal_model_comparison
from ._network_study import minimal_model_rates as minimal_model_rates
from ._network_study import network_study as network_study
from ._network_study import time_scale_map as time_scale_map
from ._plots import mechanism_phase_figure as mechanism_phase_figure
from ._plots import mechanism_summary_figure as mechanism_summary_figure
from ._plots import new_figure as new_figure
from ._plots import phase_diagram_figure as phase_diagram_figure
from ._plots import plot_network_phi as plot_network_phi
from ._plots import plot_network_run as plot_network_run
from ._plots import plot_projection_comparison as plot_projection_comparison
from ._plots import save_figure as save_figure
from ._plots import spectrum_figure as spectrum_figure
from ._plots import stop_gradient_comparison_figure as stop_gradient_comparison_figure
from ._plots import sweep_figure as sweep_figure
from ._plots import teacher_student_figure as teacher_student_figure
from ._projection import ProjectionRun as ProjectionRun
from ._projection import projection_run_report as projection_run_report
from ._projection import reduced_solver as reduced_solver
from ._projection import simulate_projection as simulate_projection
from ._projection import stop_gradient_zero_modes as stop_gradient_zero_modes
from ._reduced import ReducedField as ReducedField
from ._reduced import ReducedParams as ReducedParams
from ._reduced import ReducedState as ReducedState
from ._reduced import lift_state as lift_state
from ._reduced import moment_loss as moment_loss
from ._reduced import reduce_state as reduce_state
from ._reduced import reduced_field as reduced_field
from ._reduced import reduced_params as reduced_params
from ._spectral import asymmetry_norm as asymmetry_norm
from ._spectral import eigenvalues as eigenvalues
from ._spectral import finite_difference_jacobian as finite_difference_jacobian
from ._spectral import is_symmetric as is_symmetric
from ._spectral import jacobian as jacobian
from ._spectral import sector_basis as sector_basis
from ._spectral import sector_spectra as sector_spectra
from ._steady import SteadyState as SteadyState
from ._steady import find_steady_state as find_steady_state
from ._steady import polish as polish
from ._steady import residual_norm as residual_norm
from ._sweep import SweepResult as SweepResult
from ._sweep import collapse_time as collapse_time
from ._sweep import environment as environment
from ._sweep import frustration_sweep as frustration_sweep
from ._sweep import initialize_distributed as initialize_distributed
from ._sweep import load_sweep as load_sweep
from ._sweep import mean_over_seeds as mean_over_seeds
from ._sweep import run_grid as run_grid
from ._sweep import save_sweep as save_sweep
from ._sweep import sweep_mesh as sweep_mesh
from ._sweep import sweep_summary as sweep_summary
from ._threads import blas_threads as blas_threads
from ._threads import set_blas_threads as set_blas_threads
from ._types import EmbeddingState as EmbeddingState
from ._types import ProjectionState as ProjectionState
from ._types import TeacherStudentState as TeacherStudentState

# Single-threaded OpenBLAS, whatever was imported first, unless OPENBLAS_NUM_THREADS was set:
# the small float64 LU of every implicit step is far slower threaded on a few cores
# (docs/performance.md, "Thread settings"; set_blas_threads changes it).
_threads._default()

try:
    __version__ = version("collapse_jax")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "minimal_model_rates",
    "minimal_model_comparison",
    "time_scale_map",
    "local_exponent",
    "encoder_kernel_overlap",
    "label_span_spectrum",
    "network_study",
    "NetworkData",
    "network_data",
    "digits_data",
    "load_network_npz",
    "network_alignment",
    "with_frustration",
    "DATASETS",
    "Encoder",
    "init_encoder",
    "NetworkArgs",
    "network_loss",
    "network_row",
    "network_metrics",
    "network_start",
    "VARIANTS",
    "ACTIVATIONS",
    "NetworkConfig",
    "DEFAULT_LR",
    "network_steps",
    "network_optimizer",
    "network_member",
    "network_run",
    "network_sweep",
    "NetworkSweep",
    "fit_late_decay",
    "network_summary",
    "OPTIMIZERS",
    "RECORDED",
    "AbstractStageSolveARK",
    "accuracy_summary",
    "alpha_req",
    "asymmetry_norm",
    "bias_propagator",
    "bias_sectors",
    "binary_accuracy_scale_free",
    "BRANCHES",
    "class_distances",
    "class_means",
    "classify",
    "classify_starts",
    "COLLAPSE_RULE",
    "collapse_time",
    "collapse_verdict",
    "compare_mechanisms",
    "compare_with_direct",
    "compare_with_exact",
    "DEFAULT_ATOL",
    "default_optimizers",
    "DEFAULT_RTOL",
    "default_solver",
    "diagnose",
    "DIAGNOSTIC_KEYS",
    "diagnostics_from_stats",
    "DMFTResult",
    "dmft_report",
    "eigenvalues",
    "ema_bias_matrix",
    "ema_loss",
    "ema_predictor_loss",
    "EMAField",
    "EMAPredictorState",
    "EMAState",
    "embedding_loss",
    "embedding_member",
    "embedding_metrics",
    "embedding_spectrum",
    "embedding_run_report",
    "embedding_spectrum_report",
    "embedding_stats",
    "embedding_sweep",
    "EmbeddingState",
    "EmbeddingStats",
    "enable_compilation_cache",
    "environment",
    "blas_threads",
    "set_blas_threads",
    "exact_class_distances",
    "exact_min_l2",
    "exact_solution",
    "find_steady_state",
    "finite_difference_jacobian",
    "fit_fast_rate",
    "fit_slow_rate",
    "fitted_rates",
    "fixed_point_analysis",
    "frustration_data",
    "frustration_sweep",
    "get_mechanism",
    "get_model",
    "global_matrix",
    "infonce_loss",
    "init_ema_predictor_state",
    "init_ema_state",
    "init_embedding_state",
    "init_projection_state",
    "init_teacher_student_state",
    "initialize_distributed",
    "is_symmetric",
    "jacobian",
    "label_metrics",
    "lambda_pm",
    "lift_state",
    "load_sweep",
    "log_times",
    "mean_over_seeds",
    "mean_square_pairs",
    "Mechanism",
    "mechanism_fixed_point",
    "mechanism_member",
    "mechanism_metrics",
    "mechanism_phase_figure",
    "mechanism_summary_figure",
    "mechanism_sweep",
    "MechanismArgs",
    "MECHANISMS",
    "merge_stats",
    "min_l2",
    "min_l2_class_means",
    "Model",
    "MODELS",
    "moment_loss",
    "mse_loss",
    "n_components",
    "nc1",
    "nc2",
    "ncm_accuracy",
    "ncm_counts",
    "nearest_label_accuracy",
    "new_figure",
    "omega",
    "omega_max_eigenvalue",
    "pair_sum",
    "participation_ratio",
    "phase_diagram_figure",
    "plot_projection_comparison",
    "polish",
    "predicted_zero_modes",
    "predictor_loss",
    "projection_fixed_point",
    "projection_loss",
    "projection_member",
    "projection_metrics",
    "projection_run_report",
    "projection_spectrum_report",
    "projection_sweep",
    "PROJECTION_SWEEP_ATOL",
    "PROJECTION_SWEEP_RTOL",
    "ProjectionRun",
    "ProjectionState",
    "rankme",
    "reduce_state",
    "reduced_field",
    "reduced_params",
    "reduced_solver",
    "ReducedField",
    "ReducedParams",
    "ReducedState",
    "register",
    "residual_norm",
    "result_name",
    "ROUNDOFF_FACTOR",
    "roundoff_floor",
    "run_grid",
    "run_teacher_student",
    "sample_presence",
    "save_figure",
    "save_sweep",
    "scale_summary",
    "sector_basis",
    "sector_eigenvalues",
    "sector_spectra",
    "separation_table",
    "shared_from_frustration",
    "simulate",
    "simulate_projection",
    "singular_values",
    "smooth_hinge",
    "solve_dmft",
    "spectrum_figure",
    "plot_network_run",
    "plot_network_phi",
    "squared_distances",
    "StageSolveKenCarp3",
    "StageSolveKenCarp4",
    "StageSolveKenCarp5",
    "standard_data",
    "StandardData",
    "std_l2_normalized",
    "steady_state_spectrum_report",
    "SteadyState",
    "stop_gradient_comparison_figure",
    "stop_gradient_zero_modes",
    "stream_stats",
    "sweep_figure",
    "sweep_mesh",
    "sweep_summary",
    "SweepResult",
    "teacher_student_data",
    "teacher_student_exact_min_l2",
    "teacher_student_figure",
    "teacher_student_hessian",
    "teacher_student_loss",
    "teacher_student_member",
    "teacher_student_metrics",
    "teacher_student_problem",
    "teacher_student_projection_loss",
    "teacher_student_slow_rate",
    "TeacherStudentConfig",
    "TeacherStudentData",
    "TeacherStudentMoments",
    "TeacherStudentState",
    "train",
    "train_mechanism",
    "training_comparison",
    "training_loss",
    "trajectory_diagnostics",
    "TS_ATOL",
    "TS_FIT_FLOOR",
    "TS_RTOL",
    "vector_field",
    "VectorField",
    "vicreg_loss",
    "vicreg_terms",
]

# Old module paths (collapse_jax.sweep, collapse_jax.models.projection, ...) keep importing for
# one release, each attribute with a DeprecationWarning naming its new path.
_deprecated.install()


def __getattr__(name: str):
    return _deprecated.old_module(name)
