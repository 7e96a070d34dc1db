"""``collapse-jax simulate``: integrate the gradient flow and record metrics."""

from __future__ import annotations

from ._common import (
    RunFailed,
    UsageError,
    _add_int_flag,
    _add_model_flags,
    _add_path_flag,
    _add_positive_flag,
    _add_time_flags,
    _check_model,
    _check_run,
    _check_t_min,
    _model_info,
    _print_min_l2,
    _progress_meter,
    _relative_tolerance,
    _setup,
)

COMMAND = "simulate"


def add_parser(sub):
    sm = sub.add_parser(COMMAND, help="integrate the gradient flow and record metrics")
    _add_model_flags(sm)
    _add_time_flags(sm, 1e3)
    sm.add_argument(
        "--solver",
        choices=["kvaerno5", "tsit5", "exact", "kencarp"],
        default=None,
        help="diffrax Kvaerno5 (implicit; default, except on the projection model's reduced "
        "path), Tsit5 (explicit), the exact sector solution (embedding model), or kencarp: "
        "IMEX KenCarp with exact (y, W) stage solves (projection reduced path; its default)",
    )
    _add_path_flag(sm)
    sm.add_argument(
        "--rtol",
        type=_relative_tolerance("--rtol"),
        default=None,
        help="relative tolerance, in (0, 1) (default 1e-12)",
    )
    _add_positive_flag(sm, "--atol", None, "absolute tolerance (default 1e-14)")
    _add_int_flag(sm, "--max-steps", 1, 200_000, "solver step budget (default %(default)s)")
    sm.add_argument(
        "--figure",
        default=None,
        metavar="PATH",
        help="projection model: also integrate the other field from the same start and write "
        "a PNG comparing MinL2(t) and accuracy with and without stop-gradient",
    )


def check(args):
    """Validate the flags; fill in the default solver."""
    _check_model(args)
    if args.solver == "exact" and args.model == "projection":
        raise UsageError("--solver exact exists for the embedding model only")
    if args.solver == "kencarp" and (args.model != "projection" or args.path != "reduced"):
        raise UsageError(
            "--solver kencarp integrates the projection model's reduced path only "
            "(--model projection --path reduced)"
        )
    if args.solver is None:
        reduced = args.model == "projection" and args.path == "reduced"
        args.solver = "kencarp" if reduced else "kvaerno5"
    if args.figure is not None and args.model != "projection":
        raise UsageError("--figure compares stop-gradient runs: it needs --model projection")
    _check_t_min(args)


def _with_model_info(report, args, after):
    """``report`` with the model's flags inserted after its key ``after`` (the JSON order)."""
    info = _model_info(args)
    if args.model == "embedding":
        info.pop("stop_gradient")
    out = {}
    for key, value in report.items():
        out[key] = value
        if key == after:
            out.update(info)
    return out


def run(args, progress):
    from .._integrate import log_times

    check(args)
    _check_run(args)
    data, state = _setup(args)
    kw = dict(
        ts=log_times(args.t_min, args.t1, args.points),
        solver=args.solver,
        rtol=args.rtol,
        atol=args.atol,
        max_steps=args.max_steps,
    )
    if args.model == "projection":
        return _simulate_projection(args, progress, data, state, kw)
    from .._models.embedding import embedding_run_report

    report = embedding_run_report(data, state, progress_meter=_progress_meter(progress), **kw)
    _check_solved(report, args)
    return _with_model_info(report, args, after="seconds")


def _check_solved(report, args, which=""):
    """A solve that did not succeed is a failed run (exit 1), not a table of nulls."""
    if report["result"] == "successful":
        return
    hint = (
        f"raise --max-steps (now {args.max_steps}), or lower --t1"
        if report["result"] == "max_steps_reached"
        else "try another --solver, or looser --rtol/--atol"
    )
    raise RunFailed(
        f"the {which}solve did not succeed: diffrax result {report['result']} after "
        f"{report['steps']} steps (--solver {args.solver}); {hint}"
    )


def _simulate_projection(args, progress, data, state, kw):
    from .._projection import projection_run_report

    def integrate(stop_gradient):
        return projection_run_report(
            data,
            state,
            stop_gradient=stop_gradient,
            path=args.path,
            progress_meter=_progress_meter(progress),
            **kw,
        )

    report = integrate(args.stop_gradient)
    _check_solved(report, args)
    y_final = report.pop("final_y")
    out = _with_model_info(report, args, after="final_w_eigenvalues_abs")
    if args.figure is not None:
        from .. import _plots as plots

        other = integrate(not args.stop_gradient)
        _check_solved(other, args, "--figure comparison's ")
        title = (
            f"projection model, K={args.classes}, n={args.per_class}, M={args.shared}, "
            f"d={args.dim}, seed {args.seed}"
        )
        metrics = ("min_l2", "loss", "accuracy", "accuracy_all")
        runs = {
            sg: {k: r[k] for k in metrics}
            for sg, r in ((args.stop_gradient, report), (not args.stop_gradient, other))
        }
        fig = plots.stop_gradient_comparison_figure(kw["ts"], runs, y_final, title=title)
        out["figure"] = plots.save_figure(fig, args.figure, dpi=120)
        out["comparison"] = {
            "stop_gradient": not args.stop_gradient,
            **{k: other[k] for k in ("min_l2", "accuracy", "result", "seconds")},
        }
    return out


def print_human(out):
    line = (
        f"solver={out['solver']} result={out['result']} steps={out['steps']} "
        f"({out['seconds']:.2f} s)"
    )
    if out.get("model") == "projection":
        print(f"{line}, stop_gradient={out['stop_gradient']}")
        _print_min_l2(out)
        if "figure" in out:
            print(f"figure: {out['figure']}")
        return
    print(line)
    _print_min_l2(out)
    print(
        f"slow rate: fit {out['slow_rate_fit']:.6g}, predicted lambda+ "
        f"{out['slow_rate_predicted']:.6g} (fast lambda- {out['fast_rate_predicted']:.6g})"
    )
    print(f"max relative error of MinL2 vs the exact solution: {out['max_rel_error_vs_exact']:.2e}")
