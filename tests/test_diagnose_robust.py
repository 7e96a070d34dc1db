"""`diagnose` on hostile input: sparse label ids, wide arrays, extreme scales, odd files and
ranges (one test per defect; every number against an independent numpy reference)."""

import json
import os

import jax
import numpy as np
import pytest
from helpers import capture_figures, line_by_label

import collapse_jax as cj
from collapse_jax.cli import main


def _data(seed=0, N=60, D=6, K=3):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(K), N // K)
    z = rng.normal(size=(N, D)) + 2.0 * np.eye(D)[labels % D]
    return z, labels


def _run(capsys, *argv):
    code = main([*argv])
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys, *argv):
    code, out, err = _run(capsys, *argv)
    assert code == 2, (code, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "allow_pickle" not in err
    return err


# ----------------------------------------------------------------------------- library


def test_sparse_label_ids_are_remapped_to_the_classes_present():
    """labels {0, 7, 99999}: three classes (was a 100000-row one-hot, K x K x D arrays)."""
    z, labels = _data()
    ids = np.array([0, 7, 99999])
    sparse = ids[labels]
    out = cj.diagnose(z, sparse)
    ref = cj.diagnose(z, labels)
    assert np.asarray(out["class_ids"]).tolist() == [0, 7, 99999]
    assert np.asarray(out["class_means"]).shape == (3, 6)
    mus = np.array([z[sparse == c].mean(0) for c in ids])  # numpy reference
    np.testing.assert_allclose(out["class_means"], mus, rtol=1e-13)  # measured 2e-16
    for key in ("nc1", "nc2", "min_l2_class_means", "ncm_accuracy"):
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-14, err_msg=key)  # identical


def test_wide_input_works_in_the_sample_subspace():
    """4 x 50000 (was O(D^2) = 20 GB); the spectrum equals numpy's SVD of the centred array."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 50000)) + 3.0
    out = cj.diagnose(z)
    s_ref = np.linalg.svd(z - z.mean(0), compute_uv=False)[:3]  # rank N - 1 = 3
    s = np.asarray(out["singular_values"])
    assert s.shape == (50000,) and np.all(s[3:] == 0.0)
    np.testing.assert_allclose(s[:3], s_ref, rtol=1e-12)  # measured 4e-15
    p = s_ref / s_ref.sum()
    np.testing.assert_allclose(out["rankme"], np.exp(-np.sum(p * np.log(p))), rtol=1e-12)
    assert int(out["numerical_rank"]) == 3


@pytest.mark.parametrize("scale", [1e160, 1e-170])
def test_scale_free_metrics_are_scale_free(scale):
    """x1e160 gave rankme 0 / collapsed (squares overflowed); x1e-170 std 0 (underflow)."""
    z, labels = _data(seed=2)
    a = cj.diagnose(z, labels)
    b = cj.diagnose(z * scale, labels)
    keys = ["rankme", "alpha_req", "alpha_req_r2", "std_l2_normalized", "participation_ratio"]
    for key in [*keys, "nc1", "nc2", "ncm_accuracy"]:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-12, err_msg=key)  # measured 2e-15
    assert bool(b["collapsed"]) == bool(a["collapsed"]) is False
    assert int(b["numerical_rank"]) == int(a["numerical_rank"]) == 6
    np.testing.assert_allclose(np.asarray(b["singular_values"]) / scale, a["singular_values"],
                               rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(cj.std_l2_normalized(z * scale), a["std_l2_normalized"], rtol=1e-12)
    np.testing.assert_allclose(b["min_l2_class_means"] / scale, a["min_l2_class_means"],
                               rtol=1e-12)  # fmt: skip


def test_n_classes_below_the_labels_is_an_error():
    z, labels = _data()  # labels 0, 1, 2
    with pytest.raises(ValueError, match=r"labels must be < n_classes = 2.*got a label 2"):
        cj.diagnose(z, labels, n_classes=2)
    with pytest.raises(ValueError, match="n_classes"):
        cj.embedding_stats(z, labels, n_classes=2)


def test_alpha_req_default_is_reptrix_range_clipped_to_the_rank():
    """Ranks 11..100 (reptrix's np.arange(10, 100)) when the rank is >= 20, else 1..r."""
    alpha_req = jax.jit(cj.alpha_req, static_argnames="fit_range")  # one compile per length
    k = np.arange(1, 129)
    rng = np.random.default_rng(3)
    lam = k**-1.0 * np.exp(0.1 * rng.normal(size=k.size))
    lam[108:] *= 1e-6  # a tail drop (ranks 109..128) the default range leaves out
    sv = np.sort(np.sqrt(lam))[::-1]
    lam = sv**2
    a, r2 = alpha_req(sv)
    slope = np.polyfit(np.log(k[10:100]), np.log(lam[10:100]), 1)[0]  # numpy least squares
    np.testing.assert_allclose(a, -slope, rtol=1e-10)  # measured 2e-15
    assert float(r2) > 0.9
    _, r2_all = alpha_req(sv, fit_range=(1, 128))  # the old default: the tail drop fitted
    assert float(r2_all) < 0.9
    a64, _ = alpha_req(sv[:64])  # clipped to the rank: ranks 11..64
    slope = np.polyfit(np.log(k[10:64]), np.log(lam[10:64]), 1)[0]
    np.testing.assert_allclose(a64, -slope, rtol=1e-10)
    a19, _ = alpha_req(np.r_[sv[:19], np.zeros(5)])  # rank 19 < 20: ranks 1..19
    slope = np.polyfit(np.log(k[:19]), np.log(lam[:19]), 1)[0]
    np.testing.assert_allclose(a19, -slope, rtol=1e-10)


def test_float32_roundoff_eigenvalue_is_cut_and_not_plotted(capsys, tmp_path, monkeypatch):
    """A float32 array with an exactly degenerate direction: its float32 round-off eigenvalue
    (~1e-14 of the largest) is cut at float32's eps and not drawn."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(60, 6))
    z[:, -1] = -z[:, :-1].sum(1)  # rows sum to 0: rank 5 after centring
    np.save(tmp_path / "z.npy", z.astype(np.float32))
    saved = capture_figures(monkeypatch)
    plot = tmp_path / "s.png"
    code, out, _ = _run(capsys, "diagnose", str(tmp_path / "z.npy"), "--plot", str(plot), "--json")
    assert code == 0
    res = json.loads(out)
    assert res["numerical_rank"] == 5 and res["singular_values"][5] == 0.0
    eig = line_by_label(saved[0][0].axes[0], "covariance eigenvalues")
    assert len(eig) == 5 and eig[:, 1].min() > 1e-3 * eig[:, 1].max()


# ----------------------------------------------------------------------------- files


def test_big_endian_and_float128_files_are_read(capsys, tmp_path):
    z, _ = _data()
    np.save(tmp_path / "be.npy", z.astype(">f8"))
    np.save(tmp_path / "ld.npy", z.astype(np.longdouble))
    ref = cj.diagnose(z)
    for name in ("be.npy", "ld.npy"):
        code, out, err = _run(capsys, "diagnose", str(tmp_path / name), "--json")
        assert code == 0, err
        np.testing.assert_allclose(json.loads(out)["rankme"], float(ref["rankme"]), rtol=1e-14)
    np.save(tmp_path / "lab.npy", np.repeat(np.arange(3), 20).astype(">i8"))
    code, out, err = _run(capsys, "diagnose", str(tmp_path / "be.npy"), "--labels",
                          str(tmp_path / "lab.npy"), "--json")  # fmt: skip
    assert code == 0, err


@pytest.mark.skipif(np.finfo(np.longdouble).max <= 1e308, reason="no extended precision")
def test_float128_beyond_float64_is_refused(capsys, tmp_path):
    z = np.ones((3, 2), np.longdouble)
    z[0, 0] = np.longdouble(10) ** 400
    np.save(tmp_path / "big.npy", z)
    assert "exceed the float64 range" in _refused(capsys, "diagnose", str(tmp_path / "big.npy"))


def test_header_larger_than_file_is_refused(capsys, tmp_path):
    """100 bytes whose header claims 72.8 TiB (was a MemoryError traceback)."""
    path = tmp_path / "huge.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000000)}
        )
    assert os.path.getsize(path) <= 128
    err = _refused(capsys, "diagnose", str(path))
    assert "72.8 TiB" in err and "not a valid .npy" in err
    # the same inside an .npz
    import zipfile

    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as zf:
        zf.writestr("emb.npy", path.read_bytes())
    assert "72.8 TiB" in _refused(capsys, "diagnose", str(tmp_path / "huge.npz"))


def test_directory_is_named_a_directory(capsys, tmp_path):
    assert "is a directory" in _refused(capsys, "diagnose", str(tmp_path))


def test_text_renamed_npy_is_not_a_valid_npy(capsys, tmp_path):
    path = tmp_path / "t.npy"
    path.write_text("1 2 3\n4 5 6\n")
    assert "not a valid .npy/.npz array" in _refused(capsys, "diagnose", str(path))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert "never loaded" in _refused(capsys, "diagnose", str(tmp_path / "obj.npy"))


def test_labels_npz_with_several_arrays_advises_labels_key(capsys, tmp_path):
    z, labels = _data()
    np.save(tmp_path / "z.npy", z)
    np.savez(tmp_path / "x.npz", y=labels, other=np.zeros(3))
    err = _refused(capsys, "diagnose", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "x.npz"))
    assert "--labels-key" in err
    code, out, err = _run(capsys, "diagnose", str(tmp_path / "z.npy"), "--labels",
                          str(tmp_path / "x.npz"), "--labels-key", "y", "--json")  # fmt: skip
    assert code == 0, err
    np.testing.assert_allclose(json.loads(out)["nc1"], float(cj.diagnose(z, labels)["nc1"]))


def test_plot_path_that_is_a_directory_is_refused_and_real_path_reported(capsys, tmp_path):
    z, _ = _data()
    np.save(tmp_path / "z.npy", z)
    (tmp_path / "adir").mkdir()
    for bad in ("adir", "adir/", "noext"):
        err = _refused(capsys, "diagnose", str(tmp_path / "z.npy"), "--plot", str(tmp_path / bad))
        assert "--plot" in err
    assert not (tmp_path / "noext").exists()
    path = tmp_path / "adir" / "sub" / "s.png"
    code, out, _ = _run(capsys, "diagnose", str(tmp_path / "z.npy"), "--plot", str(path), "--json")
    assert code == 0 and json.loads(out)["plot"] == str(path) and path.is_file()


def test_fit_range_beyond_the_rank_is_refused(capsys, tmp_path):
    """--fit-range 20:100 with D = 8 gave alpha inf silently."""
    z, _ = _data(seed=5)
    np.save(tmp_path / "z.npy", z)
    err = _refused(capsys, "diagnose", str(tmp_path / "z.npy"), "--fit-range", "20:100")
    assert "--fit-range 20:100" in err and "numerical rank 6" in err


def test_poor_fit_is_flagged_in_json_and_text(capsys, tmp_path):
    rng = np.random.default_rng(6)
    z = rng.normal(size=(60, 6)) * np.r_[np.ones(3), 1e-4 * np.ones(3)]  # a step: no power law
    np.save(tmp_path / "z.npy", z)
    code, out, _ = _run(capsys, "diagnose", str(tmp_path / "z.npy"), "--json")
    res = json.loads(out)
    assert code == 0 and res["alpha_req_poor_fit"] is True and res["alpha_req_r2"] < 0.9
    assert res["alpha_req_fit_range"] == [1, 6]
    code, out, _ = _run(capsys, "diagnose", str(tmp_path / "z.npy"))
    assert "POOR FIT" in out and "ranks 1-6" in out
