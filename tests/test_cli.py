import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_axes_labelled, capture_figures, line_by_label

import collapse_jax as cj
from collapse_jax._sweep import load_sweep
from collapse_jax.cli import main


def _run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_spectrum_json_contract(capsys):
    out = _run_json(
        capsys, "spectrum", "--classes", "3", "--per-class", "4", "--shared", "1", "--dim", "2"
    )
    for key in (
        "numeric",
        "numeric_imag",
        "predicted",
        "max_abs_error",
        "sectors",
        "symmetric",
        "asymmetry_norm",
    ):
        assert key in out
    assert len(out["numeric"]) == len(out["predicted"]) == (12 + 1 + 3) * 2
    assert out["max_abs_error"] < 1e-9 and out["symmetric"] is True
    lp, lm = (float(v) for v in cj.lambda_pm(4, 1))
    sector_ii = np.asarray(out["sectors"]["II"]["predicted"])
    np.testing.assert_allclose(sector_ii, np.repeat([lm, lp], 2 * 2), rtol=1e-14)
    assert np.all(np.diff(out["numeric"]) >= 0)


def test_simulate_json_exact_path(capsys):
    out = _run_json(capsys, "simulate", "--solver", "exact", "--points", "40", "--shared", "0")
    for key in ("t", "min_l2", "loss", "accuracy", "final_state_norm", "solver", "result"):
        assert key in out
    assert len(out["t"]) == len(out["min_l2"]) == 40
    assert out["result"] == "successful" and out["solver"] == "exact"
    assert out["slow_rate_predicted"] == 0.0
    assert out["final_min_l2"] > 0.1 * out["min_l2"][0]  # M = 0: no collapse


def test_console_script_simulate_shows_lambda_plus():
    """The installed script, as a user runs it: the slope of log MinL2 is lambda_+."""
    cmd = [
        sys.executable,
        "-m",
        "collapse_jax.cli",
        "simulate",
        "--json",
        "--classes",
        "2",
        "--per-class",
        "3",
        "--shared",
        "1",
        "--dim",
        "2",
        "--t1",
        "200",
        "--points",
        "60",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"}
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # stdout holds exactly one JSON object
    assert out["result"] == "successful"
    n, M = 3, 1
    lp = 0.5 * (-(n + M + 1) + np.sqrt((n + M + 1) ** 2 - 4 * M))  # lambda+, written out
    assert out["slow_rate_predicted"] == pytest.approx(lp, rel=1e-14)
    # fit on the diffrax-integrated path: measured 1.3e-6
    assert out["slow_rate_fit"] == pytest.approx(lp, rel=1.5e-5)
    assert out["max_rel_error_vs_exact"] < 1.5e-5  # measured 1.5e-6


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["simulate", "--classes", "1"], "--classes must be >= 2, got 1"),
        (["simulate", "--per-class", "abc"], "--per-class must be an integer, got 'abc'"),
        (["simulate", "--shared", "-3"], "--shared must be >= 0, got -3"),
        (["simulate", "--t1", "-1"], "--t1 must be a positive number, got -1"),
        (["simulate", "--model", "ising"], "invalid choice: 'ising'"),
        (["spectrum", "--stop-gradient"], "--stop-gradient needs --model projection"),
        (["simulate", "--t-min", "5", "--t1", "1"], "--t-min must be < --t1=1.0, got 5.0"),
        # equal times: a "rate" fitted over identical times was reported
        (["simulate", "--t-min", "5", "--t1", "5"], "--t-min must be < --t1=5.0, got 5.0"),
        # rtol >= 1 was accepted (the result 260x off), then refused by the library as an
        # internal error
        (["simulate", "--rtol", "2"], "--rtol must lie in (0, 1)"),
        (["simulate", "--t1", "1e-300"], "--t-min must be < --t1=1e-300, got 0.01"),
        (["explode"], "invalid choice: 'explode'"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert fragment in err


# ----------------------------------------------------------------------------- diagnose


def _diagnose_files(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    z = rng.normal(size=(60, 6)) + 2.0 * np.eye(6)[labels]
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "labels.npy", labels)
    return z, labels


def test_diagnose_json_contract_matches_library(capsys, tmp_path, monkeypatch):
    z, labels = _diagnose_files(tmp_path)
    saved = capture_figures(monkeypatch)
    plot = tmp_path / "spectrum.png"
    out = _run_json(
        capsys,
        "diagnose",
        str(tmp_path / "z.npy"),
        "--labels",
        str(tmp_path / "labels.npy"),
        "--plot",
        str(plot),
    )
    keys = ["n_samples", "dim", "std_l2_normalized", "rankme", "participation_ratio"]
    keys += ["n_components_95", "alpha_req", "collapsed", "min_l2_class_means", "nc1"]
    for key in [*keys, "ncm_accuracy", "alpha_req_r2", "nc2", "singular_values"]:
        assert key in out, key
    assert out["n_samples"] == 60 and out["dim"] == 6 and out["collapsed"] is False
    ref = cj.diagnose(z, labels)
    for key in keys[2:]:
        np.testing.assert_allclose(out[key], np.asarray(ref[key]), rtol=1e-12, err_msg=key)
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    np.testing.assert_allclose(out["singular_values"], s, rtol=1e-10)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what the plot shows: the covariance eigenvalues s_k^2 / N from numpy's SVD against the
    # rank, and the alpha-ReQ power law through the geometric centre of the fitted points
    ((fig, path),) = saved
    assert path == str(plot)
    assert_axes_labelled(fig)
    ax = fig.axes[0]
    lam = s**2 / 60
    eig = line_by_label(ax, "covariance eigenvalues")
    np.testing.assert_allclose(eig, np.c_[np.arange(1, 7), lam], rtol=1e-10)
    fit = line_by_label(ax, f"alpha-ReQ = {out['alpha_req']:.3g}")
    logk = np.log(np.arange(1, 7))
    lsq = np.exp(np.polyval(np.polyfit(logk, np.log(lam), 1), logk))  # numpy least squares
    np.testing.assert_allclose(fit, np.c_[np.arange(1, 7), lsq], rtol=1e-10)
    assert "RankMe" in ax.get_title()


def test_diagnose_npz_key_single_array_and_text_report(capsys, tmp_path):
    z, _ = _diagnose_files(tmp_path)
    np.savez(tmp_path / "two.npz", emb=z, other=np.zeros(3))
    np.savez(tmp_path / "one.npz", z)
    a = _run_json(capsys, "diagnose", str(tmp_path / "two.npz"), "--key", "emb")
    b = _run_json(
        capsys, "diagnose", str(tmp_path / "one.npz"), "--fit-range", "1:3", "--rankme-eigenvalues"
    )
    assert a["rankme"] == b["rankme"] and a["n_samples"] == 60
    lam = np.linalg.svd(z - z.mean(0), compute_uv=False) ** 2
    slope = np.polyfit(np.log([1, 2, 3]), np.log(lam[:3]), 1)[0]
    np.testing.assert_allclose(b["alpha_req"], -slope, rtol=1e-10)
    q = lam / lam.sum()
    np.testing.assert_allclose(b["rankme_eigenvalues"], np.exp(-np.sum(q * np.log(q))), rtol=1e-12)
    assert "rankme_eigenvalues" not in a and a["alpha_req"] != b["alpha_req"]
    np.save(tmp_path / "const.npy", np.ones((60, 6)))
    assert main(["diagnose", str(tmp_path / "const.npy")]) == 0
    text, _ = capsys.readouterr()
    assert "COLLAPSED" in text and "RankMe 0," in text and "participation ratio 0," in text


@pytest.mark.parametrize(
    "make, extra, fragment",
    [
        (None, [], "embeddings file not found"),
        (lambda p: p.write_text("not an array"), [], "not a valid .npy/.npz array"),
        (lambda p: np.save(p, np.ones(6)), [], "must be a 2-D array"),
        (lambda p: np.save(p, np.ones((0, 6))), [], "embeddings are empty"),
        (lambda p: np.save(p, np.ones((1, 6))), [], "need at least 2 samples, got 1"),
        (lambda p: np.save(p, np.array([[1.0, np.nan], [0, 1]])), [], "1 NaN or inf"),
        (lambda p: np.save(p, np.array([["a"], ["b"]])), [], "must be real numbers"),
        (lambda p: np.save(p, np.ones((4, 2))), ["--labels", "LAB"], "labels have 3 entries"),
        (lambda p: np.save(p, np.ones((3, 2))), ["--labels", "LAB", "--key", "x"], "--key"),
        (lambda p: np.savez(p, a=np.ones((3, 2)), b=np.ones(2)), [], "choose one with --key"),
    ],
)
def test_diagnose_bad_input_exits_2_with_one_line(capsys, tmp_path, make, extra, fragment):
    path = tmp_path / "emb.npy"
    if make is not None:
        make(path)
        path = path if path.exists() else tmp_path / "emb.npy.npz"
    np.save(tmp_path / "lab.npy", np.array([0, 1, 1]))
    argv = ["diagnose", str(path), *[str(tmp_path / "lab.npy") if a == "LAB" else a for a in extra]]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert fragment in err, err


# --- projection model (docs/theory.md §3); K=3, n=4, M=2, d=4, seed 1 as in test_projection.py ---
PROJ = ["--model", "projection", "--per-class", "4", "--dim", "4", "--seed", "1"]


def test_fixed_point_json_contract_and_p2_values(capsys):
    out = _run_json(capsys, "fixed-point", *PROJ, "--stop-gradient")
    for key in (
        "min_l2",
        "residual_norm",
        "w_eigenvalues_abs",
        "predicted_bias_eigenvalue",
        "omega_max_eigenvalue",
        "omega_bound",
        "jacobian_max_real",
        "branch",
        "zero_modes",
        "t_reached",
    ):
        assert key in out
    assert out["predicted_bias_eigenvalue"] == out["omega_bound"] == pytest.approx(4 / 6)
    assert out["branch"] == "separated" and out["residual_norm"] < 1e-12
    w = np.asarray(out["w_eigenvalues_abs"])
    assert np.all(np.diff(w) >= 0)
    np.testing.assert_allclose(w, [0.0, 4 / 6, 4 / 6, 1.0], atol=1e-8)
    assert out["omega_max_eigenvalue"] <= out["omega_bound"] + 1e-12


def test_spectrum_projection_json_versus_finite_differences(capsys):
    out = _run_json(capsys, "spectrum", *PROJ, "--stop-gradient")
    n_var = (3 * 4 + 2) * 4 + 3 * 4 + 16
    assert len(out["numeric"]) == len(out["numeric_imag"]) == out["n_variables"] == n_var
    assert out["predicted"] is None
    assert np.all(np.diff(out["numeric"]) >= 0)
    assert out["max_abs_error"] < 1e-6 * np.max(np.abs(out["numeric"]))
    assert out["symmetric"] is False and out["asymmetry_norm"] > 1.0
    assert max(out["numeric"]) < 1e-7
    sec = out["sectors"]["W_on_label_span"]
    np.testing.assert_allclose(sec["numeric"], sec["predicted"], atol=1e-6)


def test_simulate_projection_json(capsys):
    # Same shapes and tolerances as test_projection.py's P1 run, so the solve compiles once.
    out = _run_json(capsys, "simulate", *PROJ, "--t1", "200", "--points", "40")
    for key in ("t", "min_l2", "loss", "accuracy", "final_state_norm", "solver", "result"):
        assert key in out
    assert out["result"] == "successful" and out["stop_gradient"] is False
    ml = np.asarray(out["min_l2"])
    assert len(ml) == 40 and ml[-1] < 1e-6 * ml[0]  # P1: M > 0 collapses
    acc = np.asarray(out["accuracy"], dtype=float)  # null (NaN) once MinL2 is round-off
    assert np.isnan(acc[-1]) and np.nanmax(acc) == 1.0


def test_simulate_projection_reduced_path_equals_full_path(capsys):
    """The default (reduced, lifted) path against integrating every sample (Kvaerno5)."""
    args = ("simulate", *PROJ, "--stop-gradient", "--t1", "50", "--points", "20")
    tol = ("--rtol", "1e-9", "--atol", "1e-12")
    red = _run_json(capsys, *args, *tol)
    full = _run_json(capsys, *args, *tol, "--path", "full")
    assert (red["path"], red["solver"]) == ("reduced", "kencarp")
    assert (full["path"], full["solver"]) == ("full", "kvaerno5")
    assert red["result"] == full["result"] == "successful"
    np.testing.assert_allclose(red["min_l2"], full["min_l2"], rtol=1e-6)
    np.testing.assert_allclose(red["loss"], full["loss"], rtol=1e-6)
    np.testing.assert_allclose(
        red["final_w_eigenvalues_abs"], full["final_w_eigenvalues_abs"], atol=1e-7
    )


def test_sweep_projection_json_has_both_fields(capsys, tmp_path, monkeypatch):
    saved = capture_figures(monkeypatch)
    out = _run_json(
        capsys,
        "sweep",
        *PROJ[:4],
        "--classes",
        "2",
        "--per-class",
        "3",
        "--dim",
        "3",
        "--frustration",
        "0:0.4:3",
        "--seeds",
        "1",
        "--t1",
        "200",
        "--points",
        "12",
        "--out",
        str(tmp_path),
        "--stop-gradient",
    )
    for key in ("file", "figure", "frustration", "shared", "final_min_l2", "slow_rate_fit"):
        assert key in out
    assert out["model"] == "projection" and out["stop_gradient"] is True
    assert out["slow_rate_predicted"] is None  # lambda+ is the embedding model's
    assert out["failed_members"] == 0 and out["comparison"]["failed_members"] == 0
    # P2: separation survives with stop-gradient; P1: frustration collapses without it
    assert min(out["final_min_l2"]) > 0.05
    cons = out["comparison"]["final_min_l2"]
    assert cons[0] > 0.05 and max(cons[1:]) < 1e-8
    for path in (out["file"], out["comparison"]["file"]):
        assert load_sweep(path).metadata["model"] == "projection"
    # the phase diagram shows both variants' final MinL2 (one seed: the mean is the value;
    # values below 1e-12 are drawn at 1e-12) against the ratios
    ((fig, path),) = saved
    assert path == out["figure"] and os.path.exists(path)
    assert_axes_labelled(fig)
    for label, final in (
        ("with stop-gradient", out["final_min_l2"]),
        ("without stop-gradient", cons),
    ):
        drawn = line_by_label(fig.axes[0], label)
        np.testing.assert_allclose(drawn[:, 0], out["frustration"], rtol=1e-15)
        np.testing.assert_allclose(drawn[:, 1], np.clip(final, 1e-12, None), rtol=1e-12)
        assert line_by_label(fig.axes[1], label).shape == line_by_label(fig.axes[2], label).shape
    acc = line_by_label(fig.axes[1], "with stop-gradient")[:, 1]
    np.testing.assert_allclose(acc, out["final_accuracy"], rtol=1e-15)


def test_projection_comparison_figure_plots_the_runs(tmp_path):
    from collapse_jax._plots import plot_projection_comparison, save_figure

    ts = np.logspace(-2, 3, 50)
    ml = np.exp(-ts / 10)
    ml[-5:] = 0.0  # MinL2 at exactly 0: not drawable on a log axis, left out (NaN)
    runs = {
        "without stop-gradient": {"min_l2": ml, "accuracy": np.ones(50)},
        "with stop-gradient": {"min_l2": 1 + 0 * ts, "accuracy": np.full(50, np.nan)},
    }
    fig = plot_projection_comparison(ts, runs, title="t", bound=1e-12)
    assert_axes_labelled(fig)
    ax1, ax2 = fig.axes
    for label, run in runs.items():
        drawn = line_by_label(ax1, label)
        np.testing.assert_array_equal(drawn[:, 0], ts)
        expected = np.where(run["min_l2"] > 0, run["min_l2"], np.nan)
        np.testing.assert_array_equal(drawn[:, 1], expected)
        np.testing.assert_array_equal(line_by_label(ax2, label), np.c_[ts, run["accuracy"]])
    assert np.all(np.isfinite(line_by_label(ax1, "with stop-gradient")))
    floor = line_by_label(ax1, "round-off floor")
    np.testing.assert_array_equal(floor[:, 1], 1e-12)
    assert ax1.get_yscale() == ax1.get_xscale() == ax2.get_xscale() == "log"
    path = save_figure(fig, tmp_path / "sub" / "f.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_simulate_projection_with_comparison_figure(capsys, tmp_path, monkeypatch):
    fig = tmp_path / "cmp.png"
    saved = capture_figures(monkeypatch)
    out = _run_json(
        capsys,
        "simulate",
        *PROJ,
        "--stop-gradient",
        "--t1",
        "100",
        "--points",
        "30",
        "--rtol",
        "1e-8",
        "--atol",
        "1e-10",
        "--figure",
        str(fig),
    )
    for key in ("t", "min_l2", "loss", "accuracy", "final_state_norm", "solver", "result"):
        assert key in out
    assert out["result"] == "successful" and len(out["accuracy"]) == 30
    assert out["figure"] == str(fig) and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the figure shows the two runs the command reports, at its save times
    ((figure, path),) = saved
    assert path == str(fig)
    assert_axes_labelled(figure)
    ax1, ax2 = figure.axes
    runs = {"with stop-gradient": out, "without stop-gradient (conservative)": out["comparison"]}
    for label, run in runs.items():
        ml = np.asarray(run["min_l2"], dtype=float)
        drawn = line_by_label(ax1, label)
        np.testing.assert_allclose(drawn[:, 0], out["t"], rtol=1e-15)
        np.testing.assert_allclose(drawn[:, 1], np.where(ml > 0, ml, np.nan), rtol=1e-15)
        acc = np.asarray(run["accuracy"], dtype=float)
        np.testing.assert_allclose(line_by_label(ax2, label)[:, 1], acc, rtol=1e-15)
    floor = line_by_label(ax1, "round-off floor")[0, 1]
    assert 0 < floor < 1e-10
    # with stop-gradient separation survives; without it MinL2 collapses (M > 0)
    assert out["final_min_l2"] > 0.1
    assert out["comparison"]["stop_gradient"] is False
    assert out["comparison"]["min_l2"][-1] < 1e-6 * out["comparison"]["min_l2"][0]
    assert out["accuracy"][-1] == 1.0


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["simulate", "--stop-gradient"], "--stop-gradient needs --model projection"),
        (["fixed-point", "--model", "embedding"], "fixed-point analyses the projection model"),
        (["simulate", "--model", "projection", "--solver", "exact"], "--solver exact exists"),
        (["simulate", "--solver", "kencarp"], "--solver kencarp integrates the projection"),
        (
            ["simulate", "--model", "projection", "--path", "full", "--solver", "kencarp"],
            "--path reduced",
        ),
        (["simulate", "--model", "projection", "--path", "half"], "invalid choice: 'half'"),
        (["simulate", "--figure", "x.png"], "--figure compares stop-gradient runs"),
        (["fixed-point", "--horizon", "10", "--t-max", "5"], "--horizon must be <= --t-max"),
        (["fixed-point", "--seeds", "0"], "--seeds must be >= 1, got 0"),
    ],
)
def test_projection_bad_input_exits_2_with_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert fragment in err
