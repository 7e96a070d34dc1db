"""The ``collapse-jax`` command line (contract: ``shared/CLI.md``).

With ``--json`` stdout holds exactly one JSON object; progress and logs go to stderr. Bad input
prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

__all__ = ["main"]

DEFAULTS = dict(classes=3, per_class=10, shared=2, dim=4, seed=0)


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, never the usage block
        # our argument types name their flag already: drop argparse's "argument --x: " prefix
        if message.startswith("argument ") and ": --" in message:
            message = message.split(": ", 1)[1]
        raise UsageError(message)


def _positive_float(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text}")
        return value

    return parse


def _int_at_least(name, minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def _add_model_flags(p):
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=["embedding", "projection"],
        default="embedding",
        help="which minimal model (default: embedding)",
    )
    g.add_argument(
        "--stop-gradient", action="store_true", help="stop-gradient field (projection model only)"
    )
    g.add_argument(
        "--classes",
        type=_int_at_least("--classes", 2),
        default=DEFAULTS["classes"],
        help="number of classes K (>= 2, default %(default)s)",
    )
    g.add_argument(
        "--per-class",
        type=_int_at_least("--per-class", 1),
        default=DEFAULTS["per_class"],
        help="clean samples per class n (>= 1, default %(default)s)",
    )
    g.add_argument(
        "--shared",
        type=_int_at_least("--shared", 0),
        default=DEFAULTS["shared"],
        help="shared (frustrated) samples M (>= 0, default %(default)s)",
    )
    g.add_argument(
        "--dim",
        type=_int_at_least("--dim", 1),
        default=DEFAULTS["dim"],
        help="embedding dimension d (>= 1, default %(default)s)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS["seed"],
        help="seed of the initial state x~N(0,1), y~2N(0,1) (default %(default)s)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="collapse-jax", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"collapse-jax {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sp = sub.add_parser("spectrum", help="Jacobian eigenvalues vs the closed-form predictions")
    _add_model_flags(sp)

    sm = sub.add_parser("simulate", help="integrate the gradient flow and record metrics")
    _add_model_flags(sm)
    sm.add_argument(
        "--t1", type=_positive_float("--t1"), default=1e3, help="end time (default %(default)s)"
    )
    sm.add_argument(
        "--t-min",
        type=_positive_float("--t-min"),
        default=1e-2,
        help="first save time (default %(default)s)",
    )
    sm.add_argument(
        "--points",
        type=_int_at_least("--points", 2),
        default=100,
        help="log-spaced save times in [t-min, t1] (default %(default)s)",
    )
    sm.add_argument(
        "--solver",
        choices=["kvaerno5", "tsit5", "exact"],
        default="kvaerno5",
        help="diffrax Kvaerno5 (implicit, default), Tsit5 (explicit), or the exact "
        "sector solution (embedding model)",
    )
    sm.add_argument(
        "--rtol",
        type=_positive_float("--rtol"),
        default=None,
        help="relative tolerance (default 1e-12)",
    )
    sm.add_argument(
        "--atol",
        type=_positive_float("--atol"),
        default=None,
        help="absolute tolerance (default 1e-14)",
    )
    sm.add_argument(
        "--max-steps",
        type=_int_at_least("--max-steps", 1),
        default=200_000,
        help="solver step budget (default %(default)s)",
    )
    sw = sub.add_parser("sweep", help="jit(vmap) over frustration ratios x seeds, sharded")
    _add_model_flags(sw)
    sw.add_argument(
        "--frustration",
        type=_frustration_range,
        default="0:0.5:16",
        help="START:STOP:COUNT ratios, STOP included (default %(default)s)",
    )
    sw.add_argument(
        "--seeds",
        type=_int_at_least("--seeds", 1),
        default=4,
        help="number of seeds 0..N-1 (default %(default)s)",
    )
    sw.add_argument("--out", default="results/sweep", help="output folder (default %(default)s)")
    sw.add_argument(
        "--method",
        choices=["exact", "integrate"],
        default="exact",
        help="exact sector solution (default) or diffrax integration",
    )
    sw.add_argument(
        "--rule",
        choices=["round", "spread"],
        default="round",
        help="how a ratio becomes shared rows (default %(default)s)",
    )
    sw.add_argument(
        "--t1", type=_positive_float("--t1"), default=1e3, help="end time (default %(default)s)"
    )
    sw.add_argument(
        "--t-min",
        type=_positive_float("--t-min"),
        default=1e-2,
        help="first save time (default %(default)s)",
    )
    sw.add_argument(
        "--points",
        type=_int_at_least("--points", 2),
        default=100,
        help="log-spaced save times (default %(default)s)",
    )
    _add_teacher_student_parser(sub)
    return p


def _frustration_range(text):
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--frustration must be START:STOP:COUNT, got {text!r}"
        ) from None
    for value in (start, stop):
        if not (math.isfinite(value) and 0.0 <= value < 1.0):
            raise argparse.ArgumentTypeError(f"--frustration values must lie in [0, 1), got {text}")
    if count < 1 or (count == 1 and start != stop):
        raise argparse.ArgumentTypeError(f"--frustration COUNT must be >= 1, got {text}")
    return np.linspace(start, stop, count)


def _jsonable(obj):
    """NaN/inf become null (plain JSON numbers only); numpy scalars and arrays become Python."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def _check_model(args):
    if args.stop_gradient and args.model == "embedding":
        raise UsageError(
            "--stop-gradient needs --model projection (the embedding model has no "
            "held copy to stop)"
        )
    if args.model == "projection":
        raise UsageError("--model projection is not available in this version (embedding only)")


def _setup(args):
    from .data import init_embedding_state, standard_data

    data = standard_data(args.classes, args.per_class, args.shared)
    import jax

    state = init_embedding_state(
        jax.random.PRNGKey(args.seed), data.n_samples, args.classes, args.dim
    )
    return data, state


def _cmd_spectrum(args, progress):
    from .fields import vector_field
    from .losses import embedding_loss
    from .spectral import embedding_spectrum_report

    data, state = _setup(args)
    report = embedding_spectrum_report(vector_field(embedding_loss), state, data)
    report.update(
        model=args.model,
        stop_gradient=False,
        classes=args.classes,
        per_class=args.per_class,
        shared=args.shared,
        dim=args.dim,
        seed=args.seed,
    )
    return report


def _result_name(result) -> str:
    import diffrax

    value = int(np.asarray(result._value))
    for name, item in diffrax.RESULTS._name_to_item.items():
        if int(item._value) == value:
            return name
    return str(value)


def _cmd_simulate(args, progress):
    import diffrax
    import jax

    from .exact import exact_min_l2, exact_solution, lambda_pm
    from .fields import vector_field
    from .integrate import DEFAULT_ATOL, DEFAULT_RTOL, log_times, simulate
    from .losses import embedding_loss
    from .metrics import embedding_metrics, fit_slow_rate

    if args.t_min > args.t1:
        raise UsageError(f"--t-min must be <= --t1={args.t1}, got {args.t_min}")
    data, state = _setup(args)
    ts = log_times(args.t_min, args.t1, args.points)
    rtol = DEFAULT_RTOL if args.rtol is None else args.rtol
    atol = DEFAULT_ATOL if args.atol is None else args.atol
    start = time.perf_counter()
    if args.solver == "exact":
        ys = exact_solution(state, data, ts)
        result, steps = "successful", 0
    else:
        solver = None if args.solver == "kvaerno5" else diffrax.Tsit5()
        sol = simulate(
            vector_field(embedding_loss),
            state,
            data.matrix(),
            ts=ts,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=args.max_steps,
            progress_meter=diffrax.TqdmProgressMeter() if progress else None,
        )
        ys, result, steps = sol.ys, _result_name(sol.result), int(sol.stats["num_steps"])
    metrics = jax.vmap(lambda s: embedding_metrics(s, data))(ys)
    seconds = time.perf_counter() - start
    reference = np.asarray(exact_min_l2(state, data, ts))
    min_l2 = np.asarray(metrics["min_l2"])
    resolved = reference > 1e-6 * reference[0]
    lam_plus, lam_minus = (float(v) for v in lambda_pm(args.per_class, float(args.shared)))
    return {
        "t": np.asarray(ts),
        "min_l2": min_l2,
        "loss": np.asarray(metrics["loss"]),
        "accuracy": np.asarray(metrics["accuracy"]),
        "accuracy_all": np.asarray(metrics["accuracy_all"]),
        "final_state_norm": float(np.sqrt(sum(np.sum(np.asarray(a)[-1] ** 2) for a in ys))),
        "solver": args.solver,
        "result": result,
        "steps": steps,
        "rtol": rtol,
        "atol": atol,
        "seconds": seconds,
        "model": args.model,
        "classes": args.classes,
        "per_class": args.per_class,
        "shared": args.shared,
        "dim": args.dim,
        "seed": args.seed,
        "min_l2_exact": reference,
        "max_rel_error_vs_exact": float(np.max(np.abs(min_l2 / reference - 1)[resolved])),
        "slow_rate_fit": fit_slow_rate(ts, min_l2),
        "slow_rate_predicted": lam_plus,
        "fast_rate_predicted": lam_minus,
        "final_min_l2": float(min_l2[-1]),
    }


def _print_human(command, out):
    if command == "teacher-student":
        _print_teacher_student(out)
    elif command == "spectrum":
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
    elif command == "sweep":
        print(
            f"{len(out['frustration'])} ratios x {out['seeds']} seeds in {out['seconds']:.2f} s "
            f"(compile {out['compile_seconds']:.2f} s, run {out['run_seconds']:.3f} s) on "
            f"{len(out['devices'])} device(s); failed members: {out['failed_members']}"
        )
        print("   phi      M   final MinL2   slow fit   lambda+")
        for row in zip(
            out["frustration"],
            out["shared"],
            out["final_min_l2"],
            out["slow_rate_fit"],
            out["slow_rate_predicted"],
            strict=True,
        ):
            print("  {:.3f} {:6.1f} {:12.4e} {:10.5f} {:9.5f}".format(*row))
        print(f"results: {out['file']}\nfigure:  {out['figure']}")
    elif command == "simulate":
        print(
            f"solver={out['solver']} result={out['result']} steps={out['steps']} "
            f"({out['seconds']:.2f} s)"
        )
        print(
            f"MinL2: {out['min_l2'][0]:.6g} at t={out['t'][0]:.3g} -> "
            f"{out['final_min_l2']:.6g} at t={out['t'][-1]:.3g}"
        )
        print(
            f"slow rate: fit {out['slow_rate_fit']:.6g}, predicted lambda+ "
            f"{out['slow_rate_predicted']:.6g} (fast lambda- {out['fast_rate_predicted']:.6g})"
        )
        print(
            f"max relative error of MinL2 vs the exact solution: "
            f"{out['max_rel_error_vs_exact']:.2e}"
        )


def _nanmean_rows(a):
    """Mean over seeds ignoring NaN (a ratio where no seed collapsed stays NaN, silently)."""
    a = np.asarray(a, dtype=np.float64)
    count = np.sum(np.isfinite(a), axis=1)
    total = np.nansum(a, axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _cmd_sweep(args, progress):
    import os

    from .integrate import log_times
    from .plots import sweep_figure
    from .sweep import collapse_time, embedding_sweep, fitted_rates, save_sweep

    if args.t_min > args.t1:
        raise UsageError(f"--t-min must be <= --t1={args.t1}, got {args.t_min}")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {args.out!r} cannot be created: {err.strerror}") from None
    ts = log_times(args.t_min, args.t1, args.points)
    if progress:
        print(f"sweeping {len(args.frustration)} ratios x {args.seeds} seeds ...", file=sys.stderr)
    start = time.perf_counter()
    result = embedding_sweep(
        args.frustration,
        args.seeds,
        n_classes=args.classes,
        per_class=args.per_class,
        dim=args.dim,
        ts=ts,
        method=args.method,
        rule=args.rule,
    )
    seconds = time.perf_counter() - start
    rates = fitted_rates(result)
    file = save_sweep(result, os.path.join(args.out, "sweep.npz"))
    figure = sweep_figure(result, rates, os.path.join(args.out, "sweep.png"))
    final = result.min_l2[..., -1]
    return {
        "file": file,
        "figure": figure,
        "frustration": result.frustration,
        "shared": result.shared,
        "final_min_l2": final.mean(axis=1),
        "slow_rate_fit": _nanmean_rows(rates["slow_rate_fit"]),
        "slow_rate_predicted": rates["slow_rate_predicted"],
        "fast_rate_fit": _nanmean_rows(rates["fast_rate_fit"]),
        "fast_rate_predicted": rates["fast_rate_predicted"],
        "collapse_time": _nanmean_rows(collapse_time(result.t, result.min_l2)),
        "failed_members": int(np.sum(result.result != 0)),
        "seconds": seconds,
        "compile_seconds": result.metadata["compile_seconds"],
        "run_seconds": result.metadata["run_seconds"],
        "devices": result.metadata["devices"],
        "method": args.method,
        "seeds": args.seeds,
    }


# --- teacher-student (issue 6, MODEL.md §4) ---------------------------------------------------


def _frustration_half(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frustration must be a number, got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value < 0.5):
        raise argparse.ArgumentTypeError(f"--frustration must lie in [0, 0.5), got {text}")
    return value


def _add_teacher_student_parser(sub):
    tp = sub.add_parser(
        "teacher-student", help="linear teacher-student model (MODEL.md §4), gradient flow"
    )
    tp.set_defaults(model="teacher-student")
    g = tp.add_argument_group("model")
    g.add_argument(
        "--frustration",
        type=_frustration_half,
        default=0.1,
        help="fraction f in [0, 0.5) of each class at the opposite peak (default %(default)s)",
    )
    g.add_argument(
        "--variant",
        choices=["plain", "projection"],
        default="plain",
        help="plain student, or with a predictor W (default %(default)s)",
    )
    g.add_argument(
        "--stop-gradient", action="store_true", help="stop-gradient field (projection only)"
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data and of the start U~N(0,1/D), y~N(0,1), W=I+0.1N(0,1) "
        "(default %(default)s)",
    )
    g.add_argument(
        "--input-dim", type=_int_at_least("--input-dim", 1), default=100, help="D (default 100)"
    )
    g.add_argument(
        "--samples",
        type=_int_at_least("--samples", 2),
        default=400,
        help="P, even (default %(default)s)",
    )
    g.add_argument(
        "--student-dim",
        type=_int_at_least("--student-dim", 1),
        default=5,
        help="p (default %(default)s)",
    )
    g.add_argument("--margin", type=float, default=2.0, help="peak distance m (default 2)")
    g.add_argument(
        "--noise", type=_positive_float("--noise"), default=1.0, help="sigma (default 1)"
    )
    r = tp.add_argument_group("run")
    r.add_argument(
        "--t1", type=_positive_float("--t1"), default=400.0, help="end time (default %(default)s)"
    )
    r.add_argument(
        "--t-min",
        type=_positive_float("--t-min"),
        default=1e-2,
        help="first save time (default %(default)s)",
    )
    r.add_argument(
        "--points",
        type=_int_at_least("--points", 2),
        default=100,
        help="log-spaced save times in [t-min, t1] (default %(default)s)",
    )
    r.add_argument(
        "--solver",
        choices=["tsit5", "kvaerno5"],
        default="tsit5",
        help="diffrax Tsit5 (default: not stiff enough for an implicit solver to pay) or "
        "Kvaerno5 (implicit, much slower here)",
    )
    r.add_argument("--figure", default=None, help="write a figure (PNG) to this path")
    o = tp.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def _cmd_teacher_student(args, progress):
    import diffrax

    from .teacher_student import TeacherStudentConfig, run_teacher_student

    if args.stop_gradient and args.variant == "plain":
        raise UsageError(
            "--stop-gradient needs --variant projection (the plain loss has no held copy)"
        )
    if args.samples % 2:
        raise UsageError(f"--samples must be even (balanced classes), got {args.samples}")
    if args.t_min > args.t1:
        raise UsageError(f"--t-min must be <= --t1={args.t1}, got {args.t_min}")
    if not math.isfinite(args.margin):
        raise UsageError(f"--margin must be a finite number, got {args.margin}")
    config = TeacherStudentConfig(
        variant=args.variant,
        stop_gradient=args.stop_gradient,
        dim=args.input_dim,
        n_samples=args.samples,
        student_dim=args.student_dim,
        margin=args.margin,
        noise=args.noise,
    )
    solver = diffrax.Kvaerno5() if args.solver == "kvaerno5" else diffrax.Tsit5()
    start = time.perf_counter()
    out = run_teacher_student(
        args.frustration,
        args.seed,
        config,
        t1=args.t1,
        t_min=args.t_min,
        points=args.points,
        progress=progress,
        solver=solver,
    )
    out["seconds"] = time.perf_counter() - start
    out["solver"] = args.solver
    out["result"] = "successful" if out["result"] == 0 else f"failed (code {out['result']})"
    out.update(input_dim=args.input_dim, samples=args.samples, student_dim=args.student_dim)
    if args.figure is not None:
        from .plots import teacher_student_figure

        try:
            out["figure"] = teacher_student_figure([out], args.figure)
        except OSError as err:
            raise UsageError(f"--figure {args.figure!r} cannot be written: {err}") from None
    return out


def _print_teacher_student(out):
    print(
        f"teacher-student {out['variant']} stop_gradient={out['stop_gradient']} "
        f"f={out['frustration']} (realised {out['frustration_realised']:.4f}) seed={out['seed']}: "
        f"{out['solver']} {out['result']}, {out['steps']} steps ({out['seconds']:.2f} s)"
    )
    print(
        f"MinL2: {out['min_l2'][0]:.6g} at t={out['t'][0]:.3g} -> {out['final_min_l2']:.6g} "
        f"at t={out['t'][-1]:.3g}"
    )
    line = f"slow rate phi_eff: fit {out['slow_rate_fit']:.6g}"
    if "slow_rate_hessian" in out:
        line += f", smallest relevant Hessian eigenvalue {out['slow_rate_hessian']:.6g}"
    print(line)
    print(
        f"accuracy: final {out['final_accuracy']:.4f}, peak {out['peak_accuracy']:.4f} at "
        f"t={out['peak_time']:.3g}, reference 1-f = {out['accuracy_reference']:.4f}"
    )
    if "figure" in out:
        print(f"figure: {out['figure']}")


COMMANDS = {"spectrum": _cmd_spectrum, "simulate": _cmd_simulate, "sweep": _cmd_sweep}
COMMANDS["teacher-student"] = _cmd_teacher_student


def main(argv=None) -> int:
    """Entry point of the ``collapse-jax`` console script."""
    try:
        args = _parser().parse_args(argv)
        _check_model(args)
        import jax

        jax.config.update("jax_enable_x64", True)
        progress = not args.quiet and not (args.json and not sys.stdout.isatty())
        out = COMMANDS[args.command](args, progress)
    except UsageError as err:
        print(f"collapse-jax: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as err:
        print(f"collapse-jax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("collapse-jax: interrupted", file=sys.stderr)
        return 130
    if args.json:
        json.dump(_jsonable(out), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        _print_human(args.command, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
