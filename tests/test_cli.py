import json
import os
import subprocess
import sys

import numpy as np
import pytest

import collapse_jax as cj
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
    lp = float(cj.lambda_pm(3, 1)[0])
    assert out["slow_rate_predicted"] == pytest.approx(lp, rel=1e-12)
    assert out["slow_rate_fit"] == pytest.approx(lp, rel=0.02)
    assert out["max_rel_error_vs_exact"] < 1e-5


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["simulate", "--classes", "1"], "--classes must be >= 2, got 1"),
        (["simulate", "--per-class", "abc"], "--per-class must be an integer, got 'abc'"),
        (["simulate", "--shared", "-3"], "--shared must be >= 0, got -3"),
        (["simulate", "--t1", "-1"], "--t1 must be a positive number, got -1"),
        (["simulate", "--model", "ising"], "invalid choice: 'ising'"),
        (["spectrum", "--stop-gradient"], "--stop-gradient needs --model projection"),
        (["simulate", "--t-min", "5", "--t1", "1"], "--t-min must be <= --t1=1.0, got 5.0"),
        (["explode"], "invalid choice: 'explode'"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert fragment in err
