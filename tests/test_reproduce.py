"""`collapse-jax reproduce`: the report embeds every figure and its verifications hold.

The default suite runs a reduced variant (the embedding and sweep sections at small sizes, the
projection sweep real but tiny; most of the time is compilation); the whole ``--quick`` run
is ``@pytest.mark.slow``. The numbers the report states are compared here with references
written in this file: `lambda_pm` in closed form, ``scipy.linalg.expm`` of the Hessian of the
embedding loss assembled from the alignment matrix, numpy least-squares fits, and the
teacher-student Hessian built in numpy from the data matrix.
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
import scipy.linalg

import collapse_jax as cj
from collapse_jax import reproduce as rp
from collapse_jax._models.embedding import fitted_rates
from collapse_jax._sweep import load_sweep
from collapse_jax.cli import main

SMALL = rp.ReproduceConfig(
    sweep_frustration=(0.0, 0.3, 4),
    sweep_seeds=2,
    integrated_sweep=2,
    projection_sweep=False,  # 35 s of compiling here: the --quick test runs it (slow)
    rates_vs_n=(5, 10),
    sweep_expm_members=2,
)


def _lambda_pm(n, M):
    """`½[−(n+M+1) ± √((n+M+1)² − 4M)]`, written out here."""
    b = n + M + 1.0
    r = math.sqrt(b * b - 4.0 * M)
    return 0.5 * (-b + r), 0.5 * (-b - r)


def _expm_min_l2(A, x0, y0, ts):
    """MinL2(t) of `expm(J t) z(0)`, `J = −(Hessian of ½ Σ A_ic |x_i − y_c|²) ⊗ I_d`."""
    A = np.asarray(A, float)
    N, K = A.shape
    d = x0.shape[1]
    H = np.block([[np.diag(A.sum(1)), -A], [-A.T, np.diag(A.sum(0))]])
    J = -np.kron(H, np.eye(d))
    v0 = np.concatenate([x0, y0]).ravel()  # row-major: (sample, coordinate)
    out = []
    for t in ts:
        y = (scipy.linalg.expm(J * t) @ v0).reshape(N + K, d)[N:]
        out.append(min(np.linalg.norm(y[a] - y[b]) for a in range(K) for b in range(a)))
    return np.array(out)


def _late_slope(t, v):
    """numpy least squares: slope of log v over t >= t_last/10 (v above 1e-8 of its max)."""
    t, v = np.asarray(t, float), np.asarray(v, float)
    ok = np.isfinite(v) & (v > 1e-8 * np.nanmax(v))
    w = ok & (t >= t[ok].max() / 10)
    X = np.stack([t[w], np.ones(w.sum())], axis=1)
    return np.linalg.lstsq(X, np.log(v[w]), rcond=None)[0][0]


def _check_figures_embedded(out_dir, result):
    report = open(result["report"]).read()
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    names = [os.path.basename(f) for f in result["figures"]]
    assert names and sorted(embedded) == sorted(names)  # each figure exactly once
    on_disk = sorted(f for f in os.listdir(out_dir) if f.endswith(".png"))
    assert on_disk == sorted(names)  # no figure written without being embedded
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


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The embedding and sweep sections at small sizes, with the real projection sweep."""
    out = tmp_path_factory.mktemp("reproduce")
    res = rp.reproduce(out, config=SMALL, sections=("embedding", "sweep"))
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
    env = nb["environment"]
    assert f"jax {jax.__version__}" in report and env["backend"] in report
    assert nb["config"]["sweep_seeds"] == 2 and nb["mode"] == "custom"


def _finite_lines(ax):
    return [ln.get_xydata() for ln in ax.get_lines() if np.isfinite(ln.get_xydata()).all()]


def test_small_run_figures_plot_their_data(small_run):
    """Each figure of the small run, rebuilt from the run's numbers: labelled axes, the
    measured arrays and the closed-form references drawn."""
    out, _, nb = small_run
    e = nb["sections"]["embedding"]
    t = np.asarray(e["t"])
    fig = rp._fig_timescales(e)
    axes = fig.axes
    assert len(axes) == 4 and all(ax.get_xlabel() and ax.get_ylabel() for ax in axes)
    # (b): the integrated (diffrax) points, not the exact curve, with the lambda+ line
    xy = {ln.get_label(): ln.get_xydata() for ln in axes[1].get_lines()}
    pts = next(v for k, v in xy.items() if k.startswith("diffrax Kvaerno5"))
    idx = np.searchsorted(t, pts[:, 0])
    np.testing.assert_allclose(pts[:, 1], np.asarray(e["min_l2_diffrax"])[idx], rtol=1e-14)
    lp = _lambda_pm(e["per_class"], e["shared"])[0]
    line = next(v for k, v in xy.items() if "closed-form slope" in k)
    slope = np.diff(np.log(line[:, 1])) / np.diff(line[:, 0])
    np.testing.assert_allclose(slope, lp, rtol=1e-9)
    # spectra: closed-form bars labelled with their multiplicity in the full spectrum
    K, n, M, d = e["classes"], e["per_class"], e["shared"], e["dim"]
    data = cj.standard_data(K, n, M)
    z = cj.init_embedding_state(jax.random.PRNGKey(e["seed"]), data.n_samples, K, d)
    rep = cj.embedding_spectrum_report(cj.vector_field(cj.embedding_loss), z, data)
    fig = rp._fig_spectra(rep, rep, M)
    labels = [tx.get_text() for tx in fig.axes[0].texts]
    mults = [int(re.search(r"×(\d+)", s).group(1)) for s in labels]
    assert sum(mults) == len(rep["numeric"])  # ×m counts every eigenvalue once, d included
    assert "each value ×d" not in fig._suptitle.get_text()
    # rates against n: fitted markers at the closed forms
    rn = e["rates_vs_n"]
    fig = rp._fig_rates_vs_n(rn)
    for ax, col, key in ((fig.axes[0], 1, "fast_rate_fit"), (fig.axes[1], 0, "slow_rate_fit")):
        assert ax.get_xlabel() and ax.get_ylabel()
        lines = {ln.get_label(): ln.get_xydata() for ln in ax.get_lines()}
        marks = next(v for k, v in lines.items() if k.startswith("fit"))
        np.testing.assert_allclose(marks[:, 1], -np.asarray(rn[key]), rtol=1e-14)
        pairs = zip(rn["per_class"], rn["shared"], strict=True)
        ref = [-_lambda_pm(nn, mm)[col] for nn, mm in pairs]
        np.testing.assert_allclose(marks[:, 1], ref, rtol=3e-3)
    # sweep figure: closed-form -lambda+ line and the integrated fits as markers
    res = load_sweep(out / "sweep_embedding.npz")
    s = nb["sections"]["sweep"]
    fig = cj.sweep_figure(res, fitted_rates(res), integrated=s["integrated"])
    ax = fig.axes[1]
    assert ax.get_xlabel() and ax.get_ylabel() and len(fig.axes) == 3
    closed = ax.get_lines()[0].get_xydata()
    ref = [-_lambda_pm(n, m)[0] for m in res.shared]
    np.testing.assert_allclose(closed[:, 1], ref, rtol=1e-12, atol=1e-15)
    assert len(_finite_lines(ax)) >= 1 + 2  # closed form + one marker set per seed


def test_k_of_n_sentence():
    assert rp._k_of_n(1, 6, 1 / 6) == f"1 of 6 (fraction {rp.fmt_value(1 / 6)})"


def test_small_run_notes_the_projection_sweep_switched_off(small_run):
    _, res, nb = small_run
    report = open(res["report"]).read()
    assert "**Projection-model sweep**: not run (switched off" in report
    assert nb["sections"]["sweep"]["projection"] is None


def test_small_run_rates_against_independent_references(small_run):
    _, _, nb = small_run
    e = nb["sections"]["embedding"]
    K, n, M, d = e["classes"], e["per_class"], e["shared"], e["dim"]
    lp, lm = _lambda_pm(n, M)
    assert e["lambda_plus"] == pytest.approx(lp, rel=1e-13)
    assert e["lambda_minus"] == pytest.approx(lm, rel=1e-13)
    t = np.asarray(e["t"])
    # slow rate: a numpy least-squares fit of the integrated path, against lambda+
    slope = _late_slope(t, e["min_l2_diffrax"])
    assert e["slow_rate_fit_diffrax"] == pytest.approx(slope, rel=1e-10)
    assert abs(slope / lp - 1) < 2e-5  # measured 2.1e-6
    assert abs(e["fast_rate_fit_diffrax"] / lm - 1) < 3e-3  # measured 2.4e-4
    # the exact path against expm of the Hessian assembled here, at a few save times
    data = cj.standard_data(K, n, M)
    z = cj.init_embedding_state(jax.random.PRNGKey(e["seed"]), data.n_samples, K, d)
    pick = np.array([0, len(t) // 3, len(t) // 2])
    ref = _expm_min_l2(data.matrix(), np.asarray(z.x), np.asarray(z.y), t[pick])
    np.testing.assert_allclose(np.asarray(e["min_l2_exact"])[pick], ref, rtol=1e-9)
    # M = 0: lambda+ = 0, the integrated MinL2 keeps its separation
    assert abs(e["slow_rate_fit_m0"]) < 1e-9 and e["final_over_initial_m0"] > 0.1
    # rates against n, closed form written here
    rn = e["rates_vs_n"]
    for k, (nn, mm) in enumerate(zip(rn["per_class"], rn["shared"], strict=True)):
        assert mm == round(rn["frustration"] * K * nn / (1 - rn["frustration"]))
        lpn, lmn = _lambda_pm(nn, mm)
        assert abs(rn["slow_rate_fit"][k] / lpn - 1) < 2e-8
        assert abs(rn["fast_rate_fit"][k] / lmn - 1) < 2e-3


def test_small_run_sweep_against_independent_references(small_run):
    out, _, nb = small_run
    s = nb["sections"]["sweep"]
    K, n = SMALL.classes, SMALL.per_class
    phis = np.linspace(0.0, 0.3, 4)
    shared = np.round(phis * K * n / (1 - phis))  # rule "round"
    np.testing.assert_array_equal(s["shared"], shared)
    pred = np.array([_lambda_pm(n, m)[0] for m in shared])
    np.testing.assert_allclose(s["slow_rate_predicted"], pred, rtol=1e-12, atol=1e-15)
    # an exact-path member against expm of its own Hessian
    res = load_sweep(out / "sweep_embedding.npz")
    i = len(phis) - 1
    data = cj.frustration_data(K, n, float(phis[i]), max_shared=int(res.metadata["max_shared"]))
    z = cj.init_embedding_state(jax.random.PRNGKey(int(res.seed[0])), data.n_samples, K, SMALL.dim)
    pick = np.array([0, 40, 60])
    ref = _expm_min_l2(data.matrix(), np.asarray(z.x), np.asarray(z.y), res.t[pick])
    np.testing.assert_allclose(res.min_l2[i, 0, pick], ref, rtol=1e-9)
    # the integrated sweep's fits against lambda_pm written out
    g = s["integrated"]
    for a, m in enumerate(g["shared"]):
        lpa, lma = _lambda_pm(n, m)
        for b in range(2):
            if m > 0:
                assert abs(g["slow_rate_fit"][a][b] / lpa - 1) < 2e-9
            else:
                assert abs(g["slow_rate_fit"][a][b]) < 1e-14
            assert abs(g["fast_rate_fit"][a][b] / lma - 1) < 2.5e-2


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


@pytest.mark.parametrize("failed, errors, code", [(0, {}, 0), (1, {}, 1), (0, {"sweep": "x"}, 1)])
def test_cli_reproduce_exit_status_follows_the_verifications(
    tmp_path, capsys, monkeypatch, failed, errors, code
):
    """Exit 0 only when every verification passed and every section ran; 1 otherwise (the
    report is written either way)."""

    def fake(out, **kw):
        return {"report": f"{out}/report.md", "numbers": "n", "figures": [], "seconds": 0.0,
                "checks": [], "passed": 3, "failed": failed, "errors": errors}  # fmt: skip

    monkeypatch.setattr(rp, "reproduce", fake)
    assert main(["reproduce", "--out", str(tmp_path), "--json"]) == code
    res = json.loads(capsys.readouterr().out)
    assert res["all_passed"] is (code == 0)


def _teacher_student_rate_numpy(xi, labels):
    """Smallest eigenvalue of the plain teacher-student Hessian (one row of U with the
    matching components of y_+, y_-) whose eigenvector moves the separation y_+ − y_-: the
    loss (1/P) Σ ½(u·ξ_i − y_{c_i})² is quadratic; its Hessian is built here from ξ."""
    xi = np.asarray(xi, float)
    c = np.asarray(labels)
    P, D = xi.shape
    H = np.zeros((D + 2, D + 2))
    for i in range(P):
        e = np.zeros(D + 2)
        e[:D] = xi[i]
        e[D if c[i] > 0 else D + 1] = -1.0
        H += np.outer(e, e) / P
    lam, Q = np.linalg.eigh(H)
    sep = np.abs(Q[D] - Q[D + 1])
    return lam[np.argmax(sep > 1e-8)]


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

    # projection sweep (real): counts of collapsed frustrated members, stated as "k of N"
    ps = nb["sections"]["sweep"]["projection"]
    N = ps["frustrated_members"]
    assert N >= 1 and ps["collapsed_count_conservative"] == N  # P1: all collapse
    assert ps["collapsed_count_stop_gradient"] == 0  # P2: none does
    report = open(res["report"]).read()
    assert f"without stop-gradient {N} of {N} (fraction 1) frustrated members" in report
    assert f"with stop-gradient 0 of {N} (fraction 0)" in report
    runs = {v: load_sweep(out_dir / f"sweep_projection_sg{v}.npz") for v in (0, 1)}
    fig = rp._fig_projection_sweep({False: runs[0], True: runs[1]}, runs[1].t)
    ax = fig.axes[1]
    undefined = [ln for ln in ax.get_lines() if "undefined" in ln.get_label()]
    assert undefined and np.all(undefined[0].get_ydata() == -0.1)
    assert all(a.get_xlabel() and a.get_ylabel() for a in fig.axes)

    # teacher-student: phi_eff against the Hessian eigenvalue built here in numpy from xi
    for r in nb["sections"]["teacher_student"]["plain"]:
        kd, _ = jax.random.split(jax.random.PRNGKey(r["seed"]))
        data = cj.teacher_student_data(kd, r["frustration"])
        ref = _teacher_student_rate_numpy(data.xi, data.labels)
        assert r["slow_rate_hessian"] == pytest.approx(ref, rel=1e-10)
        assert r["slow_rate_fit"] == pytest.approx(ref, rel=5e-3)

    # diagnostics: the class-mean MinL2 of the integrated path decays at lambda+ (closed form)
    dg = nb["sections"]["diagnostics"]
    lp = _lambda_pm(n, M)[0]
    assert dg["lambda_plus"] == pytest.approx(lp, rel=1e-13)
    ml = np.array(dg["trajectories"][f"M={M}"]["min_l2_class_means"])
    fit = _late_slope(dg["t"], ml)
    assert dg["min_l2_class_means_rate_fit"] == pytest.approx(fit, rel=1e-10)
    assert fit == pytest.approx(lp, rel=5e-10)
    assert dg["trajectories"][f"M={M}"]["collapsed"][-1] is True
    assert dg["trajectories"]["M=0"]["collapsed"][-1] is False
    fig = rp._fig_diagnostics(dg, M)
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    drawn = {ln.get_label(): ln.get_xydata() for ln in fig.axes[0].get_lines()}
    np.testing.assert_allclose(drawn[f"M={M}"][:, 1], ml, rtol=1e-15)
    ref = next(v for k, v in drawn.items() if "lambda_+" in k)
    slope = np.diff(np.log(ref[:, 1])) / np.diff(ref[:, 0])
    np.testing.assert_allclose(slope, lp, rtol=1e-9)

    # network: the two-stage run's late fit redone here (numpy lstsq), the minimal model's rate
    net = nb["sections"]["network"]
    step = np.asarray(net["step"], float)
    member = next(r for r in net["plain"] if r["frustration"] == rp.NETWORK_PHI and r["seed"] == 0)
    ml = np.asarray(net["curves"]["plain"][f"{rp.NETWORK_PHI:g}"]["min_l2"])
    w = step >= step[-1] / 2
    X = np.stack([step[w], np.ones(w.sum())], axis=1)
    fit = np.linalg.lstsq(X, np.log(ml[w]), rcond=None)[0][0]
    assert member["slow_rate_fit"] == pytest.approx(fit, rel=1e-10)
    assert member["accuracy_drop"] >= 0.2 and member["final_min_l2"] < 0.2 * ml.max()
    N, K = net["data"]["n_samples"], net["data"]["n_classes"]
    M = np.round(np.asarray(net["frustration"]) * N)
    ref = [net["lr"] * _lambda_pm((N - m) / K, m)[0] / N for m in M]
    # measured 3.2e-14: the cancellation in -b + r of the closed form written here
    np.testing.assert_allclose(net["minimal_model"]["rate_per_step"], ref, rtol=3e-13)


# --- the network section on stand-in trainings (no training: the section's logic only) -----


def _fake_network_sweep(data, frustration, seeds, *, lr, config, falls=True):
    """A `NetworkSweep` of made-up curves with the shape of the real ones: the accuracy rises
    to 1 by step 70; a plain training at `phi > 0` (if ``falls``) drops to 0.6 at step
    `60 / phi`; plain MinL2 `2 (1 + step)^-(0.2 + 10 phi)`, the stop-gradient one levels off
    at 0.5; the loss falls as `1 / (1 + step)`."""
    phis = np.asarray(frustration, dtype=np.float64)
    seeds = np.arange(seeds)
    step = cj.network_steps(config.steps, config.points, config.late)
    F, S, T = phis.size, seeds.size, step.size
    rec = {k: np.ones((F, S, 1, T)) for k in cj.RECORDED}
    for i, phi in enumerate(phis):
        acc = np.minimum(1.0, 0.3 + step / 100)
        if config.variant == "plain":
            if falls and phi > 0:
                acc = np.where(step >= 60 / phi, 0.6, acc)
            ml = 2.0 * (1.0 + step) ** -(0.2 + 10 * phi)
        else:
            ml = 0.5 + 1.5 * np.exp(-step / 50)
        for s in range(S):
            rec["accuracy"][i, s, 0] = acc
            rec["accuracy_test"][i, s, 0] = acc - 0.05
            rec["min_l2"][i, s, 0] = ml * (1 + 0.01 * s)
            rec["loss"][i, s, 0] = 1.0 / (1.0 + step)
    summary = {}
    for idx in np.ndindex(F, S, 1):
        for k, v in cj.network_summary(step, rec["accuracy"][idx], rec["min_l2"][idx]).items():
            summary.setdefault(k, np.empty((F, S, 1), object))[idx] = v
    summary = {k: v.astype(str if k == "better_fit" else np.float64) for k, v in summary.items()}
    meta = {"n_samples": data.n_samples, "n_classes": data.n_classes, "data": data.name,
            "compile_seconds": 0.0, "run_seconds": 0.0}  # fmt: skip
    shared = np.round(phis * data.n_samples).astype(np.int64)
    return cj.NetworkSweep(phis, seeds, np.array([lr]), step, shared, rec, summary, meta)


def _network_section(tmp_path, monkeypatch, **kw):
    import collapse_jax._network as network

    def fake(data, frustration, seeds, *, lr, config):
        return _fake_network_sweep(data, frustration, seeds, lr=lr, config=config, **kw)

    monkeypatch.setattr(network, "network_sweep", fake)
    res = rp.reproduce(tmp_path, config=rp.QUICK, sections=("network",))
    return res, json.load(open(res["numbers"]))


def test_network_section_rows_hold_and_fail_with_the_claims(tmp_path, monkeypatch):
    """Every row passes on curves that show the claims, and the two-stage and collapse-step
    rows fail on curves whose accuracy does not fall; the minimal model's rate per step is
    `lr lambda_+ / N` with `lambda_+` written out here."""
    res, nb = _network_section(tmp_path / "a", monkeypatch)
    _check_figures_embedded(tmp_path / "a", res)
    assert res["errors"] == {} and res["failed"] == 0 and len(res["checks"]) == 13
    net = nb["sections"]["network"]
    N, K = net["data"]["n_samples"], net["data"]["n_classes"]
    M = np.round(np.asarray(net["frustration"]) * N)
    ref = [0.1 * _lambda_pm((N - m) / K, m)[0] / N for m in M]
    # measured 3.2e-14: the cancellation in -b + r of the closed form written here
    np.testing.assert_allclose(net["minimal_model"]["rate_per_step"], ref, rtol=3e-13)

    res, _ = _network_section(tmp_path / "b", monkeypatch, falls=False)
    failed = [c["what"] for c in res["checks"] if not c["passed"]]
    assert len(failed) == 2, failed  # accuracy drop and collapse-step order (MinL2 still falls)
    assert any("peak minus final" in w for w in failed)
    assert any("consecutive collapse steps" in w for w in failed)


def test_plot_network_phi_draws_the_sweep_and_the_minimal_model():
    data = cj.digits_data()
    sweep = _fake_network_sweep(data, [0.0, 0.02, 0.04], 2, lr=0.1, config=cj.NetworkConfig())
    fig = cj.plot_network_phi(sweep)
    assert len(fig.axes) == 3 and all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    lines = {ln.get_label(): ln.get_xydata() for ln in fig.axes[0].get_lines()}
    mean = next(v for k, v in lines.items() if k.startswith("network"))
    rate = np.abs(sweep.summary["slow_rate_fit"][:, :, 0])
    np.testing.assert_allclose(mean[:, 1], rate.mean(axis=1), rtol=1e-14)  # measured 0
    N, K = data.n_samples, data.n_classes
    M = np.round(np.array([0.02, 0.04]) * N)
    pred = np.array([abs(0.1 * _lambda_pm((N - m) / K, m)[0] / N) for m in M])
    model = next(v for k, v in lines.items() if k.startswith("minimal model $"))
    np.testing.assert_allclose(model[:, 1], pred, rtol=3e-13)  # measured 3.2e-14 (as above)
    c = np.exp(np.mean(np.log(rate.mean(axis=1)[1:] / pred)))  # geometric mean of ratios
    scaled = next(v for k, v in lines.items() if k.startswith("minimal model ×"))
    np.testing.assert_allclose(scaled[:, 1], c * pred, rtol=1e-13)  # measured 7.8e-15
    # collapse step: the mean over seeds (none at phi = 0) and the scaled slow time
    lines = {ln.get_label(): ln.get_xydata() for ln in fig.axes[2].get_lines()}
    steps = sweep.summary["collapse_step"][1:, :, 0].mean(axis=1)
    drawn = next(v for k, v in lines.items() if "collapse" in k)[:, 1]
    np.testing.assert_allclose(drawn, steps, rtol=1e-14)  # measured 0
    c = np.exp(np.mean(np.log(steps * pred)))
    scaled = next(v for k, v in lines.items() if k.startswith("slow time ×"))
    np.testing.assert_allclose(scaled[:, 1], c / pred, rtol=1e-13)  # measured 8.2e-15
