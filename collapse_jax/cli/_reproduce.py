"""``collapse-jax reproduce``: every figure of the paper's story and a written report."""

from __future__ import annotations

from ._common import _add_out_flag, _add_output_flags, _add_quick_flag, _check_run, _name_list

COMMAND = "reproduce"


def _sections(text):
    from ..reproduce import SECTIONS

    return _name_list("--sections", text.replace("-", "_"), SECTIONS)


def add_parser(sub):
    rp = sub.add_parser(
        COMMAND, help="every figure of the paper's story and a written report (report.md)"
    )
    _add_out_flag(rp, "results", "output folder (default %(default)s); created if needed")
    _add_quick_flag(
        rp,
        "small sizes: a few minutes on a 2-core CPU (default: the full run, sized for an "
        "accelerator)",
    )
    rp.add_argument(
        "--sections",
        type=_sections,
        default=None,
        metavar="A,B",
        help="run only these sections (embedding, projection, sweep, teacher_student, "
        "diagnostics, network; default all)",
    )
    _add_output_flags(rp, progress="progress output")


def run(args, progress):
    from .. import reproduce as rp

    _check_run(args, writes=("report.md", "numbers.json"))
    command = "collapse-jax reproduce" + (" --quick" if args.quick else "")
    if args.sections is not None:
        command += " --sections " + ",".join(args.sections)
    res = rp.reproduce(
        args.out,
        quick=args.quick,
        sections=args.sections or rp.SECTIONS,
        progress=progress,
        command=command,
    )
    res["all_passed"] = res["failed"] == 0 and not res["errors"]
    return res


def print_human(out):
    print(f"report:  {out['report']} ({out['seconds']:.1f} s)")
    cache = out["cache"]
    loads = "off" if cache["dir"] is None else f"{cache['hits']} hits, {cache['misses']} misses"
    print(
        f"time:    compile {out['compile_seconds']:.1f} s (compilation cache: {loads}), "
        f"trace {out['trace_seconds']:.1f} s, compute {out['compute_seconds']:.1f} s"
    )
    print(f"numbers: {out['numbers']}")
    print("figures:")
    for f in out["figures"]:
        print(f"  {f}")
    print(f"verifications: {out['passed']} passed, {out['failed']} failed")
    for c in out["checks"]:
        if not c["passed"]:
            print(f"  FAILED: {c['what']}: measured {c['measured']}, error {c['error']}")
    for name, msg in out["errors"].items():
        print(f"  section {name} did not run: {msg}")
