"""``collapse-jax spectrum``: Jacobian eigenvalues vs the closed-form predictions."""

from __future__ import annotations

import numpy as np

from . import _fixed_point
from ._common import _add_model_flags, _add_path_flag, _add_steady_flags, _model_info, _setup
from ._common import _print_fixed_point as _print_steady

COMMAND = "spectrum"

# the steady-state keys a projection spectrum reports besides the eigenvalues
STEADY_KEYS = (
    "status",
    "branch",
    "residual_norm",
    "jacobian_max_real",
    "zero_modes",
    "n_variables",
    "min_l2",
    "w_eigenvalues_abs",
    "t_reached",
)


def add_parser(sub):
    sp = sub.add_parser(COMMAND, help="Jacobian eigenvalues vs the closed-form predictions")
    _add_model_flags(sp)
    _add_steady_flags(sp)
    _add_path_flag(sp)


def _projection_spectrum(args, progress):
    """Spectrum at the steady state reached from --seed. No closed form exists for the whole
    projection-model spectrum, so ``predicted`` is null and ``max_abs_error`` is the largest
    entry of |J_autodiff - J_finite_differences| (central differences): the check that the
    reported Jacobian is right (docs/theory.md §3 trap). ``sectors`` holds W on the label span of a
    separated stop-gradient fixed point, predicted {1, n/(n+M) (K-1 times)} (P2)."""
    from ..fields import vector_field
    from ..losses import projection_loss
    from ..spectral import finite_difference_jacobian, is_symmetric

    data, out = _fixed_point.fixed_point(args, progress)
    st = out.pop("steady")
    field = vector_field(projection_loss, stop_gradient=args.stop_gradient)
    J_fd = finite_difference_jacobian(field, st.state, data.matrix())
    sectors = {}
    if args.stop_gradient and out["branch"] == "separated":
        n, M, K = args.per_class, args.shared, args.classes
        sectors["W_on_label_span"] = {
            "numeric": np.sort(out["label_span_w_eigenvalues"]),
            "predicted": np.sort([1.0] + [n / (n + M)] * (K - 1)),
        }
    ev = st.eigenvalues
    report = {
        "numeric": ev.real,
        "numeric_imag": ev.imag,
        "predicted": None,
        "max_abs_error": float(np.max(np.abs(st.jacobian - J_fd))),
        "max_abs_error_reference": "central finite differences of the field",
        "sectors": sectors,
        "symmetric": is_symmetric(st.jacobian),
        "asymmetry_norm": out["asymmetry_norm"],
    }
    report.update({key: out[key] for key in STEADY_KEYS})
    report.update(_model_info(args))
    return report


def run(args, progress):
    from ..fields import vector_field
    from ..losses import embedding_loss
    from ..spectral import embedding_spectrum_report

    _fixed_point.check(args)
    if args.model == "projection":
        return _projection_spectrum(args, progress)
    data, state = _setup(args)
    report = embedding_spectrum_report(vector_field(embedding_loss), state, data)
    report.update(_model_info(args))
    return report


def print_human(out):
    if out.get("model") == "projection":
        _print_steady(out)
        print(
            f"max |J - J_fd| = {out['max_abs_error']:.2e}   symmetric={out['symmetric']}   "
            f"|J - J^T|_F = {out['asymmetry_norm']:.3e}"
        )
        return
    print(
        f"max |numeric - predicted| = {out['max_abs_error']:.3e}   "
        f"symmetric={out['symmetric']}   |J - J^T|_F = {out['asymmetry_norm']:.3e}"
    )
    for name, sec in out["sectors"].items():
        num = np.asarray(sec["numeric"])
        pred = np.asarray(sec["predicted"])
        err = np.max(np.abs(num - pred), initial=0.0)
        uniq = np.unique(np.round(pred, 10))
        print(
            f"  sector {name:9s} {len(pred):4d} eigenvalues, distinct predicted "
            f"{np.array2string(uniq, precision=6)}  max error {err:.2e}"
        )
