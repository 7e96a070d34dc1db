"""``collapse-jax dmft``: the self-consistent solution of the projection model vs direct."""

from __future__ import annotations

from ._common import (
    UsageError,
    _add_int_flag,
    _add_model_flags,
    _add_positive_flag,
    _add_t1_flag,
    _check_model,
    _check_run,
    _note,
    _setup,
)

COMMAND = "dmft"


def add_parser(sub):
    sdm = sub.add_parser(
        COMMAND, help="self-consistent (Dyson-type) solution of the projection model vs direct"
    )
    _add_model_flags(sdm, model="projection")
    _add_t1_flag(sdm, 50.0)
    _add_positive_flag(sdm, "--window", 1.0, "Picard window length (default %(default)s)")
    _add_positive_flag(
        sdm, "--tol", 1e-10, "convergence threshold on max |W_new - W_old| (default %(default)s)"
    )
    _add_int_flag(sdm, "--max-iter", 1, 50, "Picard iterations a window (default %(default)s)")


def run(args, progress):
    from .._dmft import dmft_report

    _check_model(args)
    if args.model != "projection":
        raise UsageError("dmft solves the projection model: use --model projection")
    _check_run(args)
    data, state = _setup(args)  # the projection start of docs/theory.md §1
    _note(progress, f"dmft: windows of {args.window} up to t={args.t1} ...")
    return dmft_report(
        state,
        data,
        t1=args.t1,
        window=args.window,
        stop_gradient=args.stop_gradient,
        tol=args.tol,
        max_iter=args.max_iter,
    )


def print_human(out):
    state = "converged" if out["converged"] else f"NOT converged: {out['message']}"
    print(
        f"self-consistent W(t) on {out['windows']} windows, {out['iterations']} Picard "
        f"iterations, {out['seconds']:.2f} s: {state}"
    )
    print(
        f"max |dmft - direct integration| = {out['max_abs_difference']:.3e} "
        "(over W(t) and MinL2(t))"
    )
