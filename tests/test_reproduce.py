"""`collapse-jax reproduce` (issue 8): the report embeds every figure and reports the numbers
the library computes.

The default suite runs a reduced variant (the embedding and sweep sections at small sizes,
about 20 s, most of it compilation); the whole ``--quick`` run (about 2 minutes on 2 cores)
is ``@pytest.mark.slow``. Every number the tests compare is recomputed here, either by the
same library function on the same inputs (the report reports, it does not re-derive) or from
an independent closed form written in this file.
"""

import json
import math
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax import reproduce as rp
from collapse_jax.cli import main
from collapse_jax.sweep import SweepResult

SMALL = rp.ReproduceConfig(
    points=60,
    sweep_frustration=(0.0, 0.3, 4),
    sweep_seeds=2,
    projection_sweep_frustration=(0.0, 0.3, 4),
    projection_sweep_seeds=2,
)


def _lambda_plus(n, M):
    """MODEL.md §2, written out here: `½[−(n+M+1) + √((n+M+1)² − 4M)]`."""
    b = n + M + 1.0
    return 0.5 * (-b + math.sqrt(b * b - 4.0 * M))


def _check_figures_embedded(out_dir, result):
    report = open(result["report"]).read()
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    names = [os.path.basename(f) for f in result["figures"]]
    assert names and sorted(embedded) == sorted(names)  # each figure exactly once
    on_disk = sorted(f for f in os.listdir(out_dir) if f.endswith(".png"))
    assert on_disk == sorted(names)  # no figure written without being embedded
    for f in result["figures"]:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(f) > 20_000  # a drawn figure, not an empty canvas
    # figures are numbered 1..F in report order
    numbers = [int(k) for k in re.findall(r"!\[Figure (\d+):", report)]
    assert numbers == list(range(1, len(names) + 1))
    return report


def _rows(report):
    """The verification table: row number -> cells."""
    rows = {}
    for line in report.splitlines():
        m = re.match(r"\| (\d+) \| (.*) \|$", line)
        if m:
            rows[int(m.group(1))] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return rows


def _fake_projection_sweep(
    frustration, seeds, *, stop_gradient, n_classes, per_class, dim, ts
) -> SweepResult:
    """Stands in for ``collapse_jax.sweep.projection_sweep``: known arrays, so the report must
    state exactly these collapsed fractions. Without stop-gradient every frustrated member
    collapses; with it, one of 6 does."""
    phis = np.asarray(frustration)
    F, S, T = phis.size, seeds, len(ts)
    decay = np.exp(-np.linspace(0, 40, T))
    ml = np.ones((F, S, T)) if stop_gradient else np.broadcast_to(decay, (F, S, T)).copy()
    ml[0] = 1.0  # phi = 0 never collapses
    if stop_gradient:
        ml[-1, 0] = decay
    nan = np.full((F, S, T), np.nan)
    return SweepResult(
        phis,
        np.arange(S),
        np.asarray(ts),
        np.round(phis * n_classes * per_class / (1 - phis)),
        ml,
        np.ones((F, S, T)),
        nan,
        nan,
        np.zeros((F, S), np.int32),
        np.zeros((F, S), np.int32),
        {
            "n_classes": n_classes,
            "per_class": per_class,
            "dim": dim,
            "stop_gradient": stop_gradient,
        },
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The embedding and sweep sections at small sizes (about 20 s, most of it compiling),
    with the stand-in projection sweep."""
    from collapse_jax import sweep as sweep_mod

    out = tmp_path_factory.mktemp("reproduce")
    calls = []

    def fake(*args, **kwargs):
        calls.append(kwargs["stop_gradient"])
        return _fake_projection_sweep(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep_mod, "projection_sweep", fake, raising=False)
        res = rp.reproduce(out, config=SMALL, sections=("embedding", "sweep"))
    assert calls == [False, True]
    return out, res, json.load(open(res["numbers"]))


def test_small_run_embeds_every_figure_and_passes(small_run):
    out, res, nb = small_run
    report = _check_figures_embedded(out, res)
    assert res["errors"] == {} and res["failed"] == 0 and res["passed"] == len(res["checks"])
    assert f"**{res['passed']} of {len(res['checks'])} passed.**" in report
    rows = _rows(report)
    assert sorted(rows) == list(range(1, len(res["checks"]) + 1))
    for k, check in enumerate(res["checks"], 1):
        assert rows[k][-1] == "pass"
        # every verification names its reference and why it is independent
        assert len(check["basis"]) > 10 and rows[k][3] == check["basis"].replace("|", "\\|")
        if check["kind"] != "outcome":
            assert rows[k][4].startswith(rp.fmt_error(check["error"]))
    # versions and device are recorded
    env = nb["environment"]
    assert f"jax {jax.__version__}" in report and env["backend"] in report
    assert nb["config"]["sweep_seeds"] == 2 and nb["mode"] == "custom"


def test_small_run_reports_the_projection_sweep_it_was_given(small_run):
    """Where ``collapse_jax.sweep.projection_sweep`` exists the sweep section runs it for both
    fields and reports what it returned (here the stand-in's known arrays)."""
    _, res, nb = small_run
    report = open(res["report"]).read()
    assert "sweep_projection.png" in report and "skipped" not in report
    p = nb["sections"]["sweep"]["projection"]
    # 3 frustrated ratios x 2 seeds: all collapse without, 1 of 6 with stop-gradient
    assert p["collapsed_fraction_conservative"] == 1.0
    assert p["collapsed_fraction_stop_gradient"] == pytest.approx(1 / 6)
    assert "without stop-gradient 1 of the frustrated members" in report
    assert f"with stop-gradient {rp.fmt_value(1 / 6)}" in report
    rows = {c["what"]: c for c in nb["checks"]}
    assert any(k.startswith("projection sweep without") and c["passed"] for k, c in rows.items())


def test_projection_sweep_is_skipped_with_a_note_where_it_does_not_exist(tmp_path, monkeypatch):
    from collapse_jax import sweep as sweep_mod

    monkeypatch.delattr(sweep_mod, "projection_sweep", raising=False)
    section = rp._projection_sweep_or_note(SMALL, tmp_path, lambda msg: None, sweep_mod)
    assert section.figures == [] and section.checks == [] and section.numbers is None
    assert "skipped" in section.body[0] and "projection_sweep" in section.body[0]


def test_small_run_slow_rate_matches_library_and_closed_form(small_run):
    _, _, nb = small_run
    e = nb["sections"]["embedding"]
    K, n, M, d = e["classes"], e["per_class"], e["shared"], e["dim"]
    data = cj.standard_data(K, n, M)
    z = cj.init_embedding_state(jax.random.PRNGKey(e["seed"]), data.n_samples, K, d)
    ts = cj.log_times(SMALL.t_min, SMALL.t1, SMALL.points)
    np.testing.assert_array_equal(e["t"], np.asarray(ts))
    # the same library function on the same inputs gives the same number ...
    ml = np.asarray(cj.exact_min_l2(z, data, ts))
    np.testing.assert_allclose(e["min_l2_exact"], ml, rtol=1e-13, atol=0)
    fit = cj.fit_slow_rate(ts, ml)
    assert e["slow_rate_fit_exact"] == pytest.approx(fit, rel=1e-12)
    # ... which is the closed-form lambda+ written out in this file
    lp = _lambda_plus(n, M)
    assert e["lambda_plus"] == pytest.approx(lp, rel=1e-13)
    assert abs(fit / lp - 1) < 1e-6
    # and the error the report states is that one
    check = next(
        c for c in nb["checks"] if c["what"].startswith("slow rate: fit of log MinL2 (exact")
    )
    assert check["error"] == pytest.approx(abs(fit - lp) / abs(lp), rel=1e-6, abs=1e-15)


def test_small_run_spectrum_error_matches_library(small_run):
    _, res, nb = small_run
    e = nb["sections"]["embedding"]
    K, n, M, d = e["classes"], e["per_class"], e["shared"], e["dim"]
    data = cj.standard_data(K, n, M)
    z = cj.init_embedding_state(jax.random.PRNGKey(e["seed"]), data.n_samples, K, d)
    rep = cj.embedding_spectrum_report(cj.vector_field(cj.embedding_loss), z, data)
    assert e["spectrum_max_abs_error"] == rep["max_abs_error"] < 1e-10
    report = open(res["report"]).read()
    assert f"MODEL.md §2 to {rp.fmt_error(rep['max_abs_error'])} (`M = {M}`)" in report
    # M = 0 has lambda+ = 0: the measured late slope is zero in absolute terms
    assert abs(e["slow_rate_fit_m0"]) < 1e-9 and e["final_over_initial_m0"] > 0.1


def test_small_run_sweep_rates_match_closed_form(small_run):
    _, _, nb = small_run
    s = nb["sections"]["sweep"]
    K, n = SMALL.classes, SMALL.per_class
    phis = np.linspace(0.0, 0.3, 4)
    shared = np.round(phis * K * n / (1 - phis))  # rule "round", MODEL.md §1
    np.testing.assert_array_equal(s["shared"], shared)
    pred = np.array([_lambda_plus(n, m) for m in shared])
    np.testing.assert_allclose(s["slow_rate_predicted"], pred, rtol=1e-12, atol=1e-15)
    fit = np.array(s["slow_rate_fit"], dtype=float)
    np.testing.assert_allclose(fit[1:], np.repeat(pred[1:, None], 2, axis=1), rtol=1e-6)
    assert np.all(np.abs(fit[0]) < 1e-9)  # phi = 0: no collapse
    rel = np.max(np.abs(fit[1:] / pred[1:, None] - 1))
    assert s["slow_rate_max_rel_error"] == pytest.approx(rel, rel=1e-9, abs=1e-15)


def test_unknown_section_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="sections"):
        rp.reproduce(tmp_path, sections=("embedding", "nope"))


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--sections", "embedding,foo"], "--sections must be"),
        (["--out", "FILE"], "exists and is not a directory"),
        (["--out", "FILE/sub"], "cannot be created"),
    ],
)
def test_cli_reproduce_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, msg):
    f = tmp_path / "a_file"
    f.write_text("not a folder")
    argv = [a.replace("FILE", str(f)) for a in argv]
    code = main(["reproduce", *argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and msg in err and "Traceback" not in err


# --- the whole --quick run: `pytest -m slow` -------------------------------------------------


@pytest.mark.slow
def test_cli_reproduce_quick_end_to_end(tmp_path):
    """`collapse-jax reproduce --quick --json` as a user runs it: every section, every
    figure embedded, every verification passed, and the report's numbers recomputed."""
    out_dir = tmp_path / "results"
    cmd = [sys.executable, "-m", "collapse_jax.cli", "reproduce", "--quick", "--json"]
    cmd += ["--out", str(out_dir)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)  # exactly one JSON object
    for key in ("report", "figures", "seconds"):
        assert key in res
    assert res["errors"] == {} and res["failed"] == 0 and res["all_passed"] is True
    _check_figures_embedded(out_dir, res)
    nb = json.load(open(res["numbers"]))
    assert set(nb["sections"]) == set(rp.SECTIONS) and nb["mode"] == "quick"

    # projection (P2): W on the label span against {1, n/(n+M)} computed here
    p = nb["sections"]["projection"]
    n, M, K = p["per_class"], p["shared"], p["classes"]
    sg = p["fixed_points"]["stop_gradient"]
    assert sg["branch"] == "separated"
    np.testing.assert_allclose(
        np.sort(sg["label_span_w_eigenvalues"]), np.sort([1.0] + [n / (n + M)] * (K - 1)), atol=1e-6
    )
    assert p["fixed_points"]["conservative"]["min_l2"] < 1e-8  # P1

    # teacher-student: phi_eff against the Hessian eigenvalue recomputed by the library
    for r in nb["sections"]["teacher_student"]["plain"]:
        kd, _ = jax.random.split(jax.random.PRNGKey(r["seed"]))
        data = cj.teacher_student_data(kd, r["frustration"])
        ref = cj.teacher_student_slow_rate(data.moments())
        assert r["slow_rate_hessian"] == pytest.approx(ref, rel=1e-12)
        assert r["slow_rate_fit"] == pytest.approx(ref, rel=5e-3)

    # diagnostics: the fitted decay of the class-mean MinL2 is lambda+ (closed form here)
    dg = nb["sections"]["diagnostics"]
    assert dg["lambda_plus"] == pytest.approx(_lambda_plus(n, M), rel=1e-13)
    ml = np.array(dg["trajectories"][f"M={M}"]["min_l2_class_means"])
    fit = cj.fit_slow_rate(dg["t"], ml)
    assert dg["min_l2_class_means_rate_fit"] == pytest.approx(fit, rel=1e-12)
    assert fit == pytest.approx(_lambda_plus(n, M), rel=1e-4)
    assert dg["trajectories"][f"M={M}"]["collapsed"][-1] is True
    assert dg["trajectories"]["M=0"]["collapsed"][-1] is False
