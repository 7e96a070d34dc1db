"""Numbers and their formatting: verifications (`Check`), sections (`Section`), report
cells, tables and figure references."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np


def fmt_error(x) -> str:
    """How the report writes an error or a tolerance (``1.23e-06``)."""
    x = float(x)
    return f"{x:.2e}" if math.isfinite(x) else str(x)


def fmt_value(x) -> str:
    """How the report writes a measured value (6 significant digits)."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, str):
        return x
    x = float(x)
    return f"{x:.6g}" if math.isfinite(x) else str(x)


def _plain(obj):
    """JSON-ready copy: numpy/JAX scalars and arrays become Python; NaN/inf become null."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return _plain(np.asarray(obj).tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


class Check(NamedTuple):
    """One verification: a measured quantity against its reference.

    ``error`` is ``|measured - reference|`` (``kind="abs"``), the same divided by
    ``|reference|`` (``"rel"``), or a bound violation: how far ``measured`` exceeds
    ``reference`` (``"bound"``, an upper bound) or falls short of it (``"bound_below"``), 0
    inside; for an ``"outcome"`` (a classification) it is 0 when the outcome matches and 1
    otherwise. A check passes when its error is finite and at most ``tolerance``.

    ``basis`` says what the reference is and why it is independent of the computation it
    checks (a closed form, ``scipy.linalg.expm``, a numpy loop, finite differences, an
    integration of every sample, ...); the report prints it beside every verification.
    """

    section: str
    what: str
    measured: object
    reference: object
    error: float
    kind: str
    tolerance: float
    basis: str = ""

    @property
    def passed(self) -> bool:
        return bool(math.isfinite(self.error) and self.error <= self.tolerance)

    def as_dict(self) -> dict:
        return {**_plain(self._asdict()), "passed": self.passed}


def _num(section, what, measured, reference, tol, kind="rel", *, basis: str = "") -> Check:
    m, r = float(measured), float(reference)
    if kind == "rel":
        err = abs(m - r) / abs(r) if r != 0 else abs(m - r)
    elif kind == "abs":
        err = abs(m - r)
    elif kind == "bound":
        err = max(m - r, 0.0)
    elif kind == "bound_below":
        err = max(r - m, 0.0)
    else:
        raise ValueError(kind)
    if not math.isfinite(m):
        err = float("inf")
    return Check(section, what, m, r, float(err), kind, float(tol), basis)


def _outcome(section, what, measured, expected, *, basis: str = "") -> Check:
    err = 0.0 if measured == expected else 1.0
    return Check(section, what, measured, expected, err, "outcome", 0.0, basis)


def _check_rows(section: str, rows) -> list[Check]:
    """A section's verifications from data, in report order: one row
    ``(what, measured, reference, tolerance, kind, basis)`` per `Check`.

    ``kind`` is ``"outcome"`` (``measured`` must equal ``reference``; the tolerance is 0) or
    one of the numeric kinds of `Check` (``"rel"``, ``"abs"``, ``"bound"``, ``"bound_below"``).
    """
    return [
        _outcome(section, what, measured, reference, basis=basis)
        if kind == "outcome"
        else _num(section, what, measured, reference, tolerance, kind, basis=basis)
        for what, measured, reference, tolerance, kind, basis in rows
    ]


class Section(NamedTuple):
    name: str
    body: list[str]
    figures: list[str]
    checks: list[Check]
    numbers: dict


_FIG = "Figure #"  # numbered in report order by _report


def _table(header: str, rows: list[str]) -> str:
    """A Markdown table (one paragraph) from a ``a | b`` header and ``| a | b |`` rows."""
    ncol = header.count("|") + 1
    return "\n".join([f"| {header} |", "|" + "---|" * ncol, *rows])


def _cell(x) -> str:
    """A table cell: a value, or a dash where there is none (NaN)."""
    if isinstance(x, (float, np.floating)) and not math.isfinite(float(x)):
        return "—"
    return fmt_value(x)


def _img(path: str, caption: str) -> str:
    return f"![{_FIG}: {caption}]({Path(path).name})\n\n*{_FIG}: {caption}*"


def _values(a) -> str:
    return ", ".join(fmt_value(v) for v in np.asarray(a))
