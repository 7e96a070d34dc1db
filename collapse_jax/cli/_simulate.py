"""``collapse-jax simulate``: integrate the gradient flow and record metrics."""

from __future__ import annotations

import time

import numpy as np

from ._common import (
    UsageError,
    _add_model_flags,
    _add_path_flag,
    _add_time_flags,
    _check_model,
    _check_t_min,
    _int_at_least,
    _model_info,
    _positive_float,
    _print_min_l2,
    _progress_meter,
    _setup,
    result_name,
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


def _final_norm(ys):
    return float(np.sqrt(sum(np.sum(np.asarray(a)[-1] ** 2) for a in ys)))


def run(args, progress):
    import diffrax
    import jax

    from .._exact import compare_with_exact, exact_solution
    from .._fields import vector_field
    from .._integrate import DEFAULT_ATOL, DEFAULT_RTOL, log_times, simulate
    from .._losses import embedding_loss
    from .._metrics import fit_slow_rate
    from .._models.embedding import embedding_metrics

    check(args)
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
            progress_meter=_progress_meter(progress),
        )
        ys, result, steps = sol.ys, result_name(sol.result), int(sol.stats["num_steps"])
    metrics = jax.vmap(lambda s: embedding_metrics(s, data))(ys)
    seconds = time.perf_counter() - start
    min_l2 = np.asarray(metrics["min_l2"])
    exact = compare_with_exact(state, data, ts, min_l2)
    return {
        "t": np.asarray(ts),
        "min_l2": min_l2,
        "loss": np.asarray(metrics["loss"]),
        "accuracy": np.asarray(metrics["accuracy"]),
        "accuracy_all": np.asarray(metrics["accuracy_all"]),
        "final_state_norm": _final_norm(ys),
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
        "min_l2_exact": exact["min_l2_exact"],
        "max_rel_error_vs_exact": exact["max_rel_error_vs_exact"],
        "slow_rate_fit": fit_slow_rate(ts, min_l2),
        "slow_rate_predicted": exact["slow_rate_predicted"],
        "fast_rate_predicted": exact["fast_rate_predicted"],
        "final_min_l2": float(min_l2[-1]),
    }


def _simulate_projection(args, progress, data, state, ts, rtol, atol):
    import diffrax
    import jax

    from .._integrate import default_solver
    from .._metrics import fit_slow_rate
    from .._models.projection import projection_metrics
    from .._projection import simulate_projection

    solver = {
        "kvaerno5": default_solver(rtol, atol),
        "kencarp": None,  # the reduced path's default IMEX solver
        "tsit5": diffrax.Tsit5(),
    }[args.solver]

    def integrate(stop_gradient):
        start = time.perf_counter()
        sol = simulate_projection(
            data,
            state,
            stop_gradient=stop_gradient,
            path=args.path,
            ts=ts,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=args.max_steps,
            progress_meter=_progress_meter(progress),
        )
        metrics = jax.vmap(lambda s: projection_metrics(s, data))(sol.states)
        return sol, {k: np.asarray(v) for k, v in metrics.items()}, time.perf_counter() - start

    sol, metrics, seconds = integrate(args.stop_gradient)
    ys = sol.states
    out = {
        "t": np.asarray(ts),
        "min_l2": metrics["min_l2"],
        "loss": metrics["loss"],
        "accuracy": metrics["accuracy"],
        "accuracy_all": metrics["accuracy_all"],
        "final_state_norm": _final_norm(ys),
        "solver": args.solver,
        "result": result_name(sol.result),
        "steps": int(sol.steps),
        "path": args.path,
        "rtol": rtol,
        "atol": atol,
        "seconds": seconds,
        "slow_rate_fit": fit_slow_rate(ts, metrics["min_l2"]),
        "final_min_l2": float(metrics["min_l2"][-1]),
        "final_w_eigenvalues_abs": np.sort(np.abs(np.linalg.eigvals(np.asarray(ys.W[-1])))),
    }
    out.update(_model_info(args))
    if args.figure is not None:
        from .. import _plots as plots

        other_sol, other, other_seconds = integrate(not args.stop_gradient)
        title = (
            f"projection model, K={args.classes}, n={args.per_class}, M={args.shared}, "
            f"d={args.dim}, seed {args.seed}"
        )
        fig = plots.stop_gradient_comparison_figure(
            ts, {args.stop_gradient: metrics, not args.stop_gradient: other}, ys.y[-1], title=title
        )
        out["figure"] = plots.save_figure(fig, args.figure, dpi=120)
        out["comparison"] = {
            "stop_gradient": not args.stop_gradient,
            "min_l2": other["min_l2"],
            "accuracy": other["accuracy"],
            "result": result_name(other_sol.result),
            "seconds": other_seconds,
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
