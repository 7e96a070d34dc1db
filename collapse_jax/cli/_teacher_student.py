"""``collapse-jax teacher-student``: the linear teacher-student model (docs/theory.md §4)."""

from __future__ import annotations

import math
import time

from ._common import (
    UsageError,
    _add_int_flag,
    _add_max_memory_flag,
    _add_output_flags,
    _add_positive_flag,
    _add_seed_flag,
    _add_stop_gradient_flag,
    _add_time_flags,
    _check_run,
    _check_t_min,
    _frustration_half,
    _print_min_l2,
)

COMMAND = "teacher-student"


def add_parser(sub):
    tp = sub.add_parser(
        COMMAND, help="linear teacher-student model (docs/theory.md §4), gradient flow"
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
    _add_stop_gradient_flag(g, only="projection")
    _add_seed_flag(g, "the data and of the start U~N(0,1/D), y~N(0,1), W=I+0.1N(0,1)")
    _add_int_flag(g, "--input-dim", 1, 100, "D (default 100)")
    _add_int_flag(g, "--samples", 2, 400, "P, even (default %(default)s)")
    _add_int_flag(g, "--student-dim", 1, 5, "p (default %(default)s)")
    g.add_argument("--margin", type=float, default=2.0, help="peak distance m (default 2)")
    _add_positive_flag(g, "--noise", 1.0, "sigma (default 1)")
    r = tp.add_argument_group("run")
    _add_time_flags(r, 400.0)
    r.add_argument(
        "--solver",
        choices=["tsit5", "kvaerno5"],
        default="tsit5",
        help="diffrax Tsit5 (default: not stiff enough for an implicit solver to pay) or "
        "Kvaerno5 (implicit, much slower here)",
    )
    r.add_argument("--figure", default=None, help="write a figure (PNG) to this path")
    out = tp.add_argument_group("output")
    _add_output_flags(out)
    _add_max_memory_flag(out)


def check(args):
    if args.stop_gradient and args.variant == "plain":
        raise UsageError(
            "--stop-gradient needs --variant projection (the plain loss has no held copy)"
        )
    if args.samples % 2:
        raise UsageError(f"--samples must be even (balanced classes), got {args.samples}")
    _check_t_min(args)
    if not math.isfinite(args.margin):
        raise UsageError(f"--margin must be a finite number, got {args.margin}")


def run(args, progress):
    import diffrax

    from .._models.teacher_student import TeacherStudentConfig, run_teacher_student

    check(args)
    _check_run(args)
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
        from .._plots import save_figure, teacher_student_figure

        try:
            out["figure"] = save_figure(teacher_student_figure([out]), args.figure)
        except OSError as err:
            raise UsageError(f"--figure {args.figure!r} cannot be written: {err}") from None
    return out


def print_human(out):
    print(
        f"teacher-student {out['variant']} stop_gradient={out['stop_gradient']} "
        f"f={out['frustration']} (realised {out['frustration_realised']:.4f}) seed={out['seed']}: "
        f"{out['solver']} {out['result']}, {out['steps']} steps ({out['seconds']:.2f} s)"
    )
    _print_min_l2(out)
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
