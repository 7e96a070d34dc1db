"""``collapse-jax network`` and ``collapse-jax sweep --model network`` (docs/cli.md).

References: the library called directly with the same settings ([`network_run`], [`network_sweep`]),
and numpy recomputations of the summaries from the printed arrays (peak, last value, the
least-squares slopes of log MinL2 over the second half of the steps). Small sizes: a synthetic
data set of 60 samples (3 classes, 5 inputs), 60 steps, width 8, d = 4; each training compiles
in about 5 s.
"""

import contextlib
import io
import json

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_axes_labelled, capture_figures, line_by_label

import collapse_jax as cj
from collapse_jax.cli import _network, main

SMALL = ["--steps", "60", "--width", "8", "--dim", "4"]
CONFIG = dict(steps=60, width=8, dim=4)
PHI = 0.1


def _cli(*argv):
    """``main(argv)`` in-process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _json(*argv):
    code, out, err = _cli(*argv, "--json")
    assert code == 0, err
    return json.loads(out)


def _arrays(n=60, D=5, K=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % K
    return rng.normal(size=(n, D)) + labels[:, None], labels


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "small.npz"
    X, labels = _arrays()
    np.savez(path, X=X, labels=labels)
    return str(path)


@pytest.fixture(scope="module")
def with_figure(small, tmp_path_factory):
    """One CLI run with --figure (plain and stop-gradient), its figure, and the library's."""
    png = tmp_path_factory.mktemp("fig") / "network.png"
    with pytest.MonkeyPatch.context() as mp:
        saved = capture_figures(mp)
        out = _json("network", "--data", small, "--frustration", str(PHI), *SMALL,
                    "--seed", "3", "--figure", str(png))  # fmt: skip
    data = cj.load_network_npz(small)
    runs = {
        v: cj.network_run(
            data,
            frustration=PHI,
            seed=3,
            lr=cj.DEFAULT_LR,
            config=cj.NetworkConfig(variant=v, **CONFIG),
        )
        for v in ("plain", "stop-gradient")
    }
    return out, saved, runs, str(png)


CONTRACT = {
    "step": list,
    "loss": list,
    "min_l2": list,
    "accuracy": list,
    "accuracy_test": list,
    "peak_accuracy": float,
    "peak_step": int,
    "final_accuracy": float,
    "final_min_l2": float,
    "slow_rate_fit": float,
    "power_law_exponent": float,
    "frustration": float,
    "shared": int,
}
EXTRA = {
    "variant": str,
    "min_l2_means": list,
    "rankme": list,
    "std": list,
    "nc1": list,
    "accuracy_drop": float,
    "min_l2_at_peak": float,
    "better_fit": str,
    "lr": float,
    "seed": int,
    "data": str,
    "n_samples": int,
    "config": dict,
    "seconds": float,
}


def test_json_keys_and_values_equal_the_library(with_figure):
    out, _, runs, _ = with_figure
    ref = runs["plain"]
    for key, kind in {**CONTRACT, **EXTRA}.items():
        assert isinstance(out[key], kind), (key, out[key])
    assert "collapse_step" in out
    assert out["variant"] == "plain" and out["seed"] == 3 and out["data"] == "small.npz"
    assert out["lr"] == cj.DEFAULT_LR and out["n_samples"] == 48  # 60 less 20 % of each class
    assert out["config"] == cj.NetworkConfig(**CONFIG)._asdict()
    np.testing.assert_array_equal(out["step"], cj.network_steps(60))
    for key in (
        "loss",
        "min_l2",
        "accuracy",
        "accuracy_test",
        "min_l2_means",
        "rankme",
        "std",
        "nc1",
    ):
        # the same computation: measured bit-identical (rtol 0)
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-12, err_msg=key)
    summary = ("peak_accuracy", "final_accuracy", "final_min_l2", "slow_rate_fit",
               "power_law_exponent", "accuracy_drop", "min_l2_at_peak", "frustration")  # fmt: skip
    for key in summary:
        assert out[key] == pytest.approx(ref[key], rel=1e-12), key
    assert out["peak_step"] == ref["peak_step"] and out["shared"] == ref["shared"] == 5
    assert out["better_fit"] == ref["better_fit"]


def test_summary_from_the_printed_arrays(with_figure):
    out = with_figure[0]
    step = np.asarray(out["step"], dtype=np.float64)
    acc, m = np.asarray(out["accuracy"]), np.asarray(out["min_l2"])
    i = int(np.argmax(acc))  # numpy's first maximum
    assert out["peak_accuracy"] == acc[i] and out["peak_step"] == step[i]
    assert out["final_accuracy"] == acc[-1] and out["final_min_l2"] == m[-1]
    # no record after the peak is 0.1 below it: no collapse, null (measured drop 0.0465)
    assert not np.any(acc[i + 1 :] <= acc[i] - 0.1)
    assert out["collapse_step"] is None
    late = step >= step[-1] / 2
    rate = np.polyfit(step[late], np.log(m[late]), 1)[0]
    power = np.polyfit(np.log(step[late]), np.log(m[late]), 1)[0]
    # least squares by numpy on the printed values: measured 9e-16 and 9e-15 relative
    assert out["slow_rate_fit"] == pytest.approx(rate, rel=1e-14)
    assert out["power_law_exponent"] == pytest.approx(power, rel=1e-13)


def test_figure_draws_the_json_arrays(with_figure):
    out, saved, runs, png = with_figure
    ((fig, path),) = saved
    assert path == png == out["figure"]
    assert_axes_labelled(fig)
    (a, b, c) = fig.axes
    assert a.get_xscale() == b.get_xscale() == c.get_xscale() == "log"
    assert b.get_yscale() == c.get_yscale() == "log"  # the mse losses are positive
    cmp = out["comparison"]
    assert cmp["variant"] == "stop-gradient"
    for label, run in (("plain", out), ("stop-gradient", cmp)):
        pairs = (
            (a, label, "accuracy"),
            (a, f"{label} (test)", "accuracy_test"),
            (b, label, "loss"),
            (c, label, "min_l2"),
        )
        for ax, name, key in pairs:
            xy = line_by_label(ax, name)
            np.testing.assert_array_equal(xy[:, 0], out["step"])
            np.testing.assert_allclose(xy[:, 1], run[key], rtol=1e-15, err_msg=name)
    # the comparison is the stop-gradient variant trained from the same seed
    ref = with_figure[2]["stop-gradient"]
    np.testing.assert_allclose(cmp["min_l2"], ref["min_l2"], rtol=1e-12)
    assert cmp["peak_accuracy"] == pytest.approx(ref["peak_accuracy"], rel=1e-12)


def test_stop_gradient_variant_is_compared_with_plain(small, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        _network, "_train", lambda data, config, *a: calls.append(config.variant) or _FAKE
    )
    out = _json("network", "--data", small, "--variant", "stop-gradient", "--figure",
                str(tmp_path / "f.svg"))  # fmt: skip
    assert calls == ["stop-gradient", "plain"] and out["comparison"]["variant"] == "plain"
    assert (tmp_path / "f.svg").stat().st_size > 0


_STEP = np.array([0, 1, 10, 100])
_FAKE = {
    "step": _STEP,
    "loss": np.array([1.0, 0.5, 0.1, 0.01]),
    "min_l2": np.array([1.0, 0.9, 0.5, 0.1]),
    "min_l2_means": np.array([1.0, 0.9, 0.5, np.nan]),
    "accuracy": np.array([0.3, 0.9, 0.5, 0.4]),
    "accuracy_test": np.full(4, np.nan),
    "rankme": np.ones(4),
    "std": np.ones(4),
    "nc1": np.ones(4),
    "frustration": 0.1,
    "shared": 5,
    **cj.network_summary(_STEP, [0.3, 0.9, 0.5, 0.4], [1.0, 0.9, 0.5, 0.1]),
}


def test_collapse_step_is_an_int_and_nan_is_null(small, monkeypatch):
    monkeypatch.setattr(_network, "_train", lambda *a: _FAKE)
    out = _json("network", "--data", small)
    assert out["collapse_step"] == 10 and isinstance(out["collapse_step"], int)  # 0.5 <= 0.8
    assert out["peak_step"] == 1 and out["accuracy_drop"] == pytest.approx(0.5, rel=1e-15)
    assert out["accuracy_test"] == [None] * 4 and out["min_l2_means"][-1] is None


def test_collapse_step_of_a_collapsing_run(small):
    # one shared sample of 48 at lr 0.1: the accuracy peaks, then falls (measured: peak 0.830
    # at step 87, 0.1 below it from step 196 on)
    out = _json("network", "--data", small, "--frustration", "0.02", "--lr", "0.1",
                "--steps", "400", "--width", "8", "--dim", "4")  # fmt: skip
    step, acc = np.asarray(out["step"]), np.asarray(out["accuracy"])
    i = int(np.argmax(acc))
    first = next(s for s, a in zip(step[i + 1 :], acc[i + 1 :], strict=True) if a <= acc[i] - 0.1)
    assert isinstance(out["collapse_step"], int) and out["collapse_step"] == first
    assert out["accuracy_drop"] == pytest.approx(acc[i] - acc[-1], rel=1e-12)


def test_float32_run(small):
    out = _json("network", "--data", small, "--frustration", str(PHI), *SMALL, "--float32")
    data = cj.load_network_npz(small, dtype=jnp.float32)
    ref = cj.network_run(data, frustration=PHI, config=cj.NetworkConfig(**CONFIG))
    assert out["dtype"] == "float32" and ref["accuracy"].dtype == np.float32
    for key in ("loss", "min_l2", "accuracy", "accuracy_test"):
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-12, err_msg=key)  # measured 0


def test_float32_run_stays_float32(small):
    data = cj.load_network_npz(small, dtype=jnp.float32)
    ref = cj.network_run(data, frustration=PHI, config=cj.NetworkConfig(steps=2, width=8, dim=4))
    # the training itself runs in float32; the diagnostics of the embeddings (RankMe, std,
    # NC1, class-mean MinL2) are computed in float64 by the diagnostics module, as for any input
    trained = ("loss", "min_l2", "spread", "accuracy", "accuracy_test")
    assert {ref[k].dtype for k in trained} == {np.dtype(np.float32)}


def test_digits_human_output_and_progress_bar():
    from sklearn.datasets import load_digits

    code, out, err = _cli("network", "--steps", "5", "--width", "8", "--dim", "4")
    assert code == 0, err
    counts = np.bincount(load_digits().target)
    n_train = int(np.sum(counts - np.round(0.2 * counts)))  # 20 % of every class held out
    assert f"on digits ({n_train} training samples, 10 classes)" in out
    T = len(cj.network_steps(5))
    assert f"{T}/{T}" in err  # one tick per record step
    lines = out.splitlines()
    assert lines[1].split() == ["step", "loss", "MinL2", "accuracy", "test", "acc."]
    assert [int(line.split()[0]) for line in lines[2 : 2 + T]] == list(cj.network_steps(5))
    assert any(line.startswith("accuracy: peak") for line in lines)
    assert any(line.startswith("MinL2: ") for line in lines)


def _bad_files(tmp_path):
    X, labels = _arrays()
    files = {}
    for name, arrays in (
        ("nolabels", dict(X=X)),
        ("mismatch", dict(X=X, labels=labels[:-1])),
        ("nan", dict(X=np.where(np.arange(60)[:, None] == 7, np.nan, X), labels=labels)),
        ("oneclass", dict(X=X, labels=np.zeros(60, int))),
    ):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        files[name] = str(tmp_path / f"{name}.npz")
    np.save(tmp_path / "x.npy", X)
    files["npy"] = str(tmp_path / "x.npy")
    files["dir"] = str(tmp_path)
    return files


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--data", "mnist"], "--data must be one of digits or an .npz file"),
        (["--data", "missing.npz"], "does not exist"),
        (["--data", "@dir"], "is a directory"),
        (["--data", "@npy"], "is not a readable .npz"),
        (["--data", "@nolabels"], "must hold arrays 'X' and 'labels'"),
        (["--data", "@mismatch"], "one label per row of X (60)"),
        (["--data", "@nan"], "X must be finite, got nan at row 7"),
        (["--data", "@oneclass"], "at least two classes"),
        (["--frustration", "1"], "--frustration must lie in [0, 1), got 1"),
        (["--frustration", "-0.1"], "--frustration must lie in [0, 1)"),
        (["--lr", "0"], "--lr must be a positive number, got 0"),
        (["--lr=-1e-3"], "--lr must be a positive number, got -1e-3"),
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--width", "0"], "--width must be >= 1, got 0"),
        (["--dim", "-2"], "--dim must be >= 1"),
        (["--depth", "-1"], "--depth must be >= 0"),
        (["--test-fraction", "1"], "--test-fraction must lie in [0, 1)"),
        (["--weight-decay", "-1"], "--weight-decay must be a finite number >= 0"),
        (["--variant", "byol"], "invalid choice: 'byol'"),
        (["--optimizer", "lion"], "invalid choice: 'lion'"),
        (["--batch-size", "49"], "--batch-size must be <= the 48 training samples"),
        (["--figure", "out.xyz"], "unknown image format 'xyz'"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, fragment, small, tmp_path):
    files = _bad_files(tmp_path)
    argv = [files[a[1:]] if a.startswith("@") else a for a in argv]
    if "--data" not in argv:
        argv = ["--data", small, *argv]
    for extra in ([], ["--json"]):
        code, out, err = _cli("network", *argv, *extra)
        assert code == 2, err
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert err.startswith("collapse-jax: error: ")
        assert fragment in err, err
        assert (out == "") if not extra else "error" in json.loads(out)


# ----------------------------------------------------------------------- sweep --model network


def test_sweep_network_file_equals_the_library(small, tmp_path):
    argv = ["sweep", "--model", "network", "--data", small, *SMALL, "--frustration",
            "0:0.2:2", "--seeds", "2", "--out", str(tmp_path / "sw")]  # fmt: skip
    out = _json(*argv)
    ref = cj.network_sweep(
        cj.load_network_npz(small), [0.0, 0.2], 2, config=cj.NetworkConfig(**CONFIG)
    )
    assert out["file"] == str(tmp_path / "sw" / "sweep_network.npz") and out["figure"] is None
    assert out["model"] == "network" and out["failed_members"] == 0
    with np.load(out["file"], allow_pickle=False) as f:
        for name in ("frustration", "seed", "lr", "step", "shared"):
            np.testing.assert_array_equal(f[name], getattr(ref, name), err_msg=name)
        for name, value in ref.records.items():
            assert f[name].shape == (2, 2, 1, len(ref.step))
            # the same computation: measured bit-identical, as the summaries and the means
            np.testing.assert_allclose(f[name], value, rtol=1e-12, err_msg=name)
        for name, value in ref.summary.items():
            if name == "better_fit":
                np.testing.assert_array_equal(f[f"summary_{name}"], value)
            else:
                np.testing.assert_allclose(f[f"summary_{name}"], value, rtol=1e-12, err_msg=name)
        meta = json.loads(str(f["metadata"]))
        summary = {k: f[f"summary_{k}"] for k in ref.summary}
    assert meta["config"] == cj.NetworkConfig(**CONFIG)._asdict() and meta["n_samples"] == 48
    # per-ratio means over seeds, skipping undefined values, recomputed with numpy
    for key in ("peak_accuracy", "final_accuracy", "collapse_step", "slow_rate_fit",
                "power_law_exponent", "final_min_l2"):  # fmt: skip
        for i in range(2):
            vals = summary[key][i, :, 0]
            vals = vals[np.isfinite(vals)]
            want = vals.mean() if vals.size else None
            got = out[key][i]
            assert (got is None) if want is None else got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--steps", "5"], "--steps is for --model network, got --model embedding"),
        (["--model", "projection", "--data", "digits"], "--data is for --model network"),
        (["--model", "network", "--stop-gradient"], "--variant stop-gradient"),
        (["--model", "network", "--data", "mnist"], "--data must be one of digits"),
        (["--model", "network", "--lr", "0"], "--lr must be a positive number"),
    ],
)
def test_sweep_network_bad_input(argv, fragment, tmp_path):
    code, out, err = _cli("sweep", *argv, "--out", str(tmp_path / "sw"))
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert fragment in err
    assert not (tmp_path / "sw").exists()
