"""Compare two ``numbers.json`` files of ``collapse-jax reproduce`` (a regression record).

``reproduce_quick_before_layout.json`` beside this file is the ``numbers.json`` of
``collapse-jax reproduce --quick`` written before the package's modules became private
(2026-11-30, 2-core CPU, jax 0.10.2). A restructuring that claims "behaviour unchanged" is
measured by running the same command after it, in the same environment, and comparing:

    collapse-jax reproduce --quick --out /tmp/rq
    python tests/data/compare_reproduce.py tests/data/reproduce_quick_before_layout.json \\
        /tmp/rq/numbers.json

Sections the earlier record does not have (added to ``reproduce`` since: ``network``) are
listed and left out of the comparison, their verification rows included; compare them with a
record that has them.

Every verification row must have the same wording, tolerance, reference basis and verdict;
every number (the rows' measured values and errors, and every number under ``sections``)
must agree to ``1e-10`` relative or ``1e-13`` absolute (round-off of quantities that are
themselves at round-off). Timings, environment and figure paths are not compared. Exit
status 0 when everything agrees, 1 otherwise; the worst differences are printed.

This compares the library with an earlier version of itself: it is a record of *unchanged*,
not a check of correctness (the verification rows compare with independent references).
"""

from __future__ import annotations

import json
import math
import sys

REL, ABS = 1e-10, 1e-13
SKIP = {"seconds", "section_seconds", "environment", "figures", "config", "errors"}


def _walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in SKIP or "seconds" in key:
                continue
            if key not in a or key not in b:
                out.append((math.inf, f"{path}.{key}", "missing on one side", ""))
                continue
            _walk(a[key], b[key], f"{path}.{key}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((math.inf, path, f"length {len(a)}", f"length {len(b)}"))
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{i}]", out)
    elif isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or a is None:
        if a != b:
            out.append((math.inf, path, a, b))
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return
        diff = abs(a - b)
        excess = diff / (REL * max(abs(a), abs(b)) + ABS)
        if excess > 1.0 or not math.isfinite(excess):
            out.append((excess, path, a, b))
    elif a != b:
        out.append((math.inf, path, a, b))


def compare(before: dict, after: dict) -> list:
    """``[(excess over the allowance, path, before, after)]`` of what differs, worst first."""
    out = []
    common = set(before["sections"])
    checks_a = before["checks"]
    checks_b = [c for c in after["checks"] if c["section"] in common]
    sections_b = {k: v for k, v in after["sections"].items() if k in common}
    if [c["what"] for c in checks_a] != [c["what"] for c in checks_b]:
        out.append((math.inf, "checks", "different rows", ""))
    _walk({"checks": checks_a, "sections": before["sections"]},
          {"checks": checks_b, "sections": sections_b}, "", out)  # fmt: skip
    return sorted(out, key=lambda r: -r[0])


def new_sections(before: dict, after: dict) -> list:
    """Sections of ``after`` that ``before`` does not record (not compared)."""
    return [k for k in after["sections"] if k not in before["sections"]]


def main(argv) -> int:
    before, after = (json.load(open(p, encoding="utf-8")) for p in argv[1:3])
    diffs = compare(before, after)
    n_checks = len(after["checks"])
    passed = sum(bool(c["passed"]) for c in after["checks"])
    print(f"{n_checks} verification rows, {passed} passed; {len(diffs)} differences")
    extra = new_sections(before, after)
    if extra:
        print(f"  not in the earlier record, not compared: {', '.join(extra)}")
    for excess, path, a, b in diffs[:20]:
        print(f"  {path}: {a!r} -> {b!r} ({excess:.3g}x the allowance)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
