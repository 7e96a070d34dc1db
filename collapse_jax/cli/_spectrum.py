"""``collapse-jax spectrum``: Jacobian eigenvalues vs the closed-form predictions."""

from __future__ import annotations

import numpy as np

from . import _fixed_point
from ._common import (
    _add_model_flags,
    _add_path_flag,
    _add_steady_flags,
    _check_run,
    _model_info,
    _setup,
)
from ._common import _print_fixed_point as _print_steady

COMMAND = "spectrum"


def add_parser(sub):
    sp = sub.add_parser(COMMAND, help="Jacobian eigenvalues vs the closed-form predictions")
    _add_model_flags(sp)
    _add_steady_flags(sp)
    _add_path_flag(sp)


def run(args, progress):
    from .._fields import vector_field
    from .._losses import embedding_loss, projection_loss
    from .._models.embedding import embedding_spectrum_report
    from .._models.projection import steady_state_spectrum_report

    _fixed_point.check(args)
    _check_run(args)
    if args.model == "projection":
        # at the steady state reached from --seed, checked against finite differences
        data, analysis = _fixed_point.fixed_point(args, progress)
        field = vector_field(projection_loss, stop_gradient=args.stop_gradient)
        report = steady_state_spectrum_report(
            field, analysis, data, stop_gradient=args.stop_gradient
        )
    else:
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
