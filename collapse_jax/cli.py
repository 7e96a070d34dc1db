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
    _add_steady_flags(sp)

    sf = sub.add_parser(
        "fixed-point", help="projection model: run to a steady state and analyse it (P1-P3)"
    )
    _add_model_flags(sf)
    sf.set_defaults(model="projection")
    _add_steady_flags(sf)
    sf.add_argument(
        "--seeds",
        type=_int_at_least("--seeds", 1),
        default=1,
        help="also classify this many starts (seeds --seed, --seed+1, ...) by branch "
        "(default %(default)s: only --seed)",
    )

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
    sm.add_argument(
        "--figure",
        default=None,
        metavar="PATH",
        help="projection model: also integrate the other field from the same start and write "
        "a PNG comparing MinL2(t) and accuracy with and without stop-gradient",
    )
    return p


def _add_steady_flags(p):
    g = p.add_argument_group("steady state (projection model)")
    g.add_argument(
        "--horizon",
        type=_positive_float("--horizon"),
        default=1e3,
        help="first integration horizon; later ones grow x10 (default %(default)s)",
    )
    g.add_argument(
        "--t-max",
        type=_positive_float("--t-max"),
        default=1e5,
        help="give up (report a slow transient or saddle) at this time (default %(default)s)",
    )


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
    if args.command == "fixed-point" and args.model != "projection":
        raise UsageError(
            f"fixed-point analyses the projection model (MODEL.md §3), got --model {args.model}"
        )
    if getattr(args, "solver", None) == "exact" and args.model == "projection":
        raise UsageError("--solver exact exists for the embedding model only")
    if getattr(args, "figure", None) is not None and args.model != "projection":
        raise UsageError("--figure compares stop-gradient runs: it needs --model projection")
    if hasattr(args, "t_max") and args.horizon > args.t_max:
        raise UsageError(f"--horizon must be <= --t-max={args.t_max}, got {args.horizon}")


def _setup(args, seed=None):
    from .data import init_embedding_state, init_projection_state, standard_data

    data = standard_data(args.classes, args.per_class, args.shared)
    import jax

    init = init_projection_state if args.model == "projection" else init_embedding_state
    key = jax.random.PRNGKey(args.seed if seed is None else seed)
    state = init(key, data.n_samples, args.classes, args.dim)
    return data, state


def _model_info(args):
    return dict(
        model=args.model,
        stop_gradient=bool(args.stop_gradient),
        classes=args.classes,
        per_class=args.per_class,
        shared=args.shared,
        dim=args.dim,
        seed=args.seed,
    )


def _progress_meter(progress):
    import diffrax

    return diffrax.TqdmProgressMeter() if progress else None


def _fixed_point(args, progress, seed=None):
    from .steady import projection_fixed_point

    data, state = _setup(args, seed)
    out = projection_fixed_point(
        data,
        state,
        stop_gradient=args.stop_gradient,
        t1=args.horizon,
        t_max=args.t_max,
        progress_meter=_progress_meter(progress),
    )
    return data, out


def _cmd_fixed_point(args, progress):
    data, out = _fixed_point(args, progress)
    out.pop("steady")
    if args.seeds > 1:
        from .steady import BRANCHES

        runs = [out]
        for seed in range(args.seed + 1, args.seed + args.seeds):
            other = _fixed_point(args, progress, seed)[1]
            other.pop("steady")
            runs.append(other)
        counts = {b: sum(r["branch"] == b for r in runs) for b in BRANCHES}
        out["branch_counts"] = counts
        out["branch_fractions"] = {b: c / len(runs) for b, c in counts.items()}
        out["runs"] = [
            {
                "seed": args.seed + k,
                "branch": r["branch"],
                "status": r["status"],
                "min_l2": r["min_l2"],
                "residual_norm": r["residual_norm"],
                "jacobian_max_real": r["jacobian_max_real"],
                "zero_modes": r["zero_modes"],
                "t_reached": r["t_reached"],
                "w_eigenvalues_abs": r["w_eigenvalues_abs"],
            }
            for k, r in enumerate(runs)
        ]
    out.update(_model_info(args), seeds=args.seeds)
    return out


def _projection_spectrum(args, progress):
    """Spectrum at the steady state reached from --seed. No closed form exists for the whole
    projection-model spectrum, so ``predicted`` is null and ``max_abs_error`` is the largest
    entry of |J_autodiff - J_finite_differences| (central differences): the check that the
    reported Jacobian is right (MODEL.md §3 trap). ``sectors`` holds W on the label span of a
    separated stop-gradient fixed point, predicted {1, n/(n+M) (K-1 times)} (P2)."""
    from .fields import vector_field
    from .losses import projection_loss
    from .spectral import finite_difference_jacobian, is_symmetric

    data, out = _fixed_point(args, progress)
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
    for key in (
        "status",
        "branch",
        "residual_norm",
        "jacobian_max_real",
        "zero_modes",
        "n_variables",
        "min_l2",
        "w_eigenvalues_abs",
        "t_reached",
    ):
        report[key] = out[key]
    report.update(_model_info(args))
    return report


def _cmd_spectrum(args, progress):
    from .fields import vector_field
    from .losses import embedding_loss
    from .spectral import embedding_spectrum_report

    if args.model == "projection":
        return _projection_spectrum(args, progress)
    data, state = _setup(args)
    report = embedding_spectrum_report(vector_field(embedding_loss), state, data)
    report.update(_model_info(args))
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
    if args.model == "projection":
        return _simulate_projection(args, progress, data, state, ts, rtol, atol)
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


def _simulate_projection(args, progress, data, state, ts, rtol, atol):
    import diffrax
    import jax

    from .fields import vector_field
    from .integrate import simulate
    from .losses import projection_loss
    from .metrics import fit_slow_rate, projection_metrics, roundoff_floor

    solver = None if args.solver == "kvaerno5" else diffrax.Tsit5()

    def run(stop_gradient):
        start = time.perf_counter()
        sol = simulate(
            vector_field(projection_loss, stop_gradient=stop_gradient),
            state,
            data.matrix(),
            ts=ts,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=args.max_steps,
            progress_meter=_progress_meter(progress),
        )
        metrics = jax.vmap(lambda s: projection_metrics(s, data))(sol.ys)
        return sol, {k: np.asarray(v) for k, v in metrics.items()}, time.perf_counter() - start

    sol, metrics, seconds = run(args.stop_gradient)
    ys = sol.ys
    out = {
        "t": np.asarray(ts),
        "min_l2": metrics["min_l2"],
        "loss": metrics["loss"],
        "accuracy": metrics["accuracy"],
        "accuracy_all": metrics["accuracy_all"],
        "final_state_norm": float(np.sqrt(sum(np.sum(np.asarray(a)[-1] ** 2) for a in ys))),
        "solver": args.solver,
        "result": _result_name(sol.result),
        "steps": int(sol.stats["num_steps"]),
        "rtol": rtol,
        "atol": atol,
        "seconds": seconds,
        "slow_rate_fit": fit_slow_rate(ts, metrics["min_l2"]),
        "final_min_l2": float(metrics["min_l2"][-1]),
        "final_w_eigenvalues_abs": np.sort(np.abs(np.linalg.eigvals(np.asarray(ys.W[-1])))),
    }
    out.update(_model_info(args))
    if args.figure is not None:
        from .plots import plot_projection_comparison

        other_sol, other, other_seconds = run(not args.stop_gradient)
        by_sg = {args.stop_gradient: metrics, not args.stop_gradient: other}
        runs = {
            "without stop-gradient (conservative)": by_sg[False],
            "with stop-gradient": by_sg[True],
        }
        floor = float(roundoff_floor(ys.y[-1]))
        title = (
            f"projection model, K={args.classes}, n={args.per_class}, M={args.shared}, "
            f"d={args.dim}, seed {args.seed}"
        )
        path = plot_projection_comparison(ts, runs, args.figure, title=title, bound=floor)
        out["figure"] = str(path)
        out["comparison"] = {
            "stop_gradient": not args.stop_gradient,
            "min_l2": other["min_l2"],
            "accuracy": other["accuracy"],
            "result": _result_name(other_sol.result),
            "seconds": other_seconds,
        }
    return out


def _print_human(command, out):
    if command == "fixed-point" or (command == "spectrum" and out.get("model") == "projection"):
        print(
            f"{out['status']} ({out['branch']}) at t={out['t_reached']:.4g}: residual "
            f"{out['residual_norm']:.2e}, MinL2 {out['min_l2']:.6g}, max Re J "
            f"{out['jacobian_max_real']:.2e}, zero modes {out['zero_modes']}"
        )
        print(f"|eig W| = {np.array2string(np.asarray(out['w_eigenvalues_abs']), precision=6)}")
        if command == "fixed-point":
            print(
                f"n/(n+M) = {out['predicted_bias_eigenvalue']:.6g}; max eig Omega(W) = "
                f"{out['omega_max_eigenvalue']:.6g} (bound {out['omega_bound']:.6g})"
            )
            for k, sec in enumerate(out["bias_sectors"]):
                print(
                    f"  bias direction {k}: spread {sec['spread']:.4g}, w = "
                    f"{sec['w_rayleigh']:.6g} -> {sec['sector']}"
                )
            if "branch_counts" in out:
                print(f"branches over {out['seeds']} starts: {out['branch_counts']}")
        else:
            print(
                f"max |J - J_fd| = {out['max_abs_error']:.2e}   symmetric={out['symmetric']}   "
                f"|J - J^T|_F = {out['asymmetry_norm']:.3e}"
            )
        return
    if command == "simulate" and out.get("model") == "projection":
        print(
            f"solver={out['solver']} result={out['result']} steps={out['steps']} "
            f"({out['seconds']:.2f} s), stop_gradient={out['stop_gradient']}"
        )
        print(
            f"MinL2: {out['min_l2'][0]:.6g} at t={out['t'][0]:.3g} -> "
            f"{out['final_min_l2']:.6g} at t={out['t'][-1]:.3g}"
        )
        if "figure" in out:
            print(f"figure: {out['figure']}")
        return
    if command == "spectrum":
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


COMMANDS = {
    "spectrum": _cmd_spectrum,
    "simulate": _cmd_simulate,
    "fixed-point": _cmd_fixed_point,
}


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
