"""`diagnose` by blocks of rows: the float32 Gram route against a float64 reference, streaming
(``chunk=``, ``--chunk``) against the array held in memory, compiled code shared across N.

One shape for every test (N=3000, D=32, K=4 classes, chunks of 1000 rows): the QR route's
compiled functions are shared between the tests; the Gram route compiles nothing."""

import json

import jax
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax import _diagnostics_gram
from collapse_jax.cli import main

N, D, K, CHUNK = 3000, 32, 4, 1000
RTOL32 = 10 * D * float(np.finfo(np.float32).eps)  # diagnose's default cut for float32 data
SCALARS = ["rankme", "participation_ratio", "alpha_req", "alpha_req_r2", "std_l2_normalized"]
CLASS_SCALARS = ["nc1", "nc2", "min_l2_class_means", "ncm_accuracy"]


def _data(seed=0, dtype=np.float32):
    """Singular values over 3.5 decades (the smallest just above float32's cut), an offset,
    four shifted classes and a few unlabelled rows."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.normal(size=(N, D)))[0]
    V = np.linalg.qr(rng.normal(size=(D, D)))[0]
    labels = rng.integers(0, K, N)
    labels[::97] = -1
    centres = 0.02 * rng.normal(size=(K, D))
    z = 40 * (U * np.logspace(0, -3.5, D)) @ V.T + centres[np.maximum(labels, 0)] + 2.0
    return z.astype(dtype), labels


@pytest.fixture
def gram_calls(monkeypatch):
    """Counts the passes of the Gram route."""
    calls = []
    original = _diagnostics_gram.gram_stats
    monkeypatch.setattr(
        _diagnostics_gram, "gram_stats", lambda *a: calls.append(a[3]) or original(*a)
    )
    return calls


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def test_gram_route_matches_float64_reference(gram_calls):
    """float32 data: the Gram route against the QR route on the same data in float64 and
    against numpy's SVD (docs/diagnostics.md §8)."""
    z, labels = _data()
    out = cj.diagnose(z, labels)
    assert gram_calls, "a float32 array in memory takes the Gram route"
    z64 = z.astype(np.float64)
    ref = cj.diagnose(z64, labels, rtol=RTOL32)  # QR route, float64 data, the same cut
    assert not _diagnostics_gram.gram_route(z64.dtype, N, D, RTOL32)
    s_ref = np.linalg.svd(z64 - z64.mean(0), compute_uv=False)
    s = np.asarray(out["singular_values"])
    assert int(out["numerical_rank"]) == int(ref["numerical_rank"]) == D - 1
    assert s[D - 2] < 1e-3 * s[0]  # the smallest kept value: 8.4e-4 of the largest
    keep = s > 0
    # Gram round-off ~ eps64 (s_1/s_k)^2 on s_k: measured 1.0e-11 at s_k = 8.4e-4 s_1 (the
    # QR route: 1.7e-15)
    assert _rel(s[keep], s_ref[keep]) < 1e-10
    for key, tol in [  # measured: 5.3e-15, 3.3e-16, 4.1e-13, 1.9e-13, 2.1e-16
        ("rankme", 1e-13),
        ("participation_ratio", 1e-14),
        ("alpha_req", 1e-11),
        ("alpha_req_r2", 1e-11),
        ("std_l2_normalized", 1e-14),
    ]:
        assert _rel(out[key], ref[key]) < tol, key
    for key, tol in [  # measured: 6.5e-15, 3.8e-16, 3.9e-16, 0, 2.2e-16
        ("nc1", 1e-13),
        ("nc2", 1e-14),
        ("min_l2_class_means", 1e-14),
        ("ncm_accuracy", 1e-15),
        ("class_means", 1e-14),
    ]:
        assert _rel(out[key], ref[key]) < tol, key
    assert int(out["n_components_95"]) == int(ref["n_components_95"])
    np.testing.assert_array_equal(out["class_counts"], ref["class_counts"])


def test_gram_route_only_where_its_round_off_is_negligible():
    # 1000 eps64 / eps32 = 1.9e-6: float32 at its default cut from D = 2 on, never float64,
    # never a cut below it, never a wide array
    assert _diagnostics_gram.gram_route(np.float32, 10, 2, 10 * 2 * 1.19e-7)
    assert not _diagnostics_gram.gram_route(np.float32, 10, 1, 10 * 1 * 1.19e-7)
    assert not _diagnostics_gram.gram_route(np.float32, 10, 4, 1e-7)
    assert not _diagnostics_gram.gram_route(np.float64, 10, 4, 1e-3)
    assert not _diagnostics_gram.gram_route(np.float32, 3, 4, 1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunks_match_the_array_in_memory(dtype, tmp_path, gram_calls):
    """Three chunks of 1000 rows, from the array and from a memory map, against one pass."""
    z, labels = _data(seed=1, dtype=dtype)
    one = cj.diagnose(z, labels)
    chunked = cj.diagnose(z, labels, chunk=CHUNK)
    np.save(tmp_path / "z.npy", z)
    mapped = cj.diagnose(np.load(tmp_path / "z.npy", mmap_mode="r"), labels, chunk=CHUNK)
    if dtype == np.float32:
        assert gram_calls == [N, CHUNK, CHUNK]  # one block in memory, then chunks
    else:
        assert gram_calls == []
    # float32 (Gram route): the blocks change the Gram round-off, measured 2.2e-11 on the
    # smallest kept singular value, 1.2e-12 on alpha; float64 (QR route): 5.9e-15
    sv_tol, tol = (3e-10, 1e-11) if dtype == np.float32 else (1e-13, 1e-13)
    assert _rel(chunked["singular_values"][: D - 1], one["singular_values"][: D - 1]) < sv_tol
    for key in [*SCALARS, *CLASS_SCALARS, "class_means"]:
        assert _rel(chunked[key], one[key]) < tol, key
    for key, value in chunked.items():
        np.testing.assert_array_equal(mapped[key], value, err_msg=key)  # the same arithmetic
    assert int(chunked["numerical_rank"]) == int(one["numerical_rank"])


def test_gram_route_compiles_nothing():
    """The Gram route runs in numpy, the metrics included: no compilation at any N."""
    z, labels = _data(seed=2)
    compiled = []

    def listen(event, seconds, **_):
        if event.startswith("/jax/core/compile/"):
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        for n in (3000, 1500, 801):
            cj.diagnose(z[:n])
            cj.diagnose(z[:n], labels[:n], rankme_eigenvalues=True)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled == []


def test_gram_route_exact_cases():
    """A simplex ETF (every row on its class mean) has NC1 exactly 0; a constant float32
    array is fully collapsed, as on the QR route (test_diagnostics.py)."""
    rng = np.random.default_rng(3)
    labels = np.arange(N) % K
    Q = np.linalg.qr(rng.normal(size=(D, D)))[0][:, :K]
    etf = (np.eye(K) - 1.0 / K) @ Q.T * 3.0
    out = cj.diagnose((etf[labels] + 1.0).astype(np.float32), labels)
    assert float(out["nc1"]) == 0.0 and float(out["ncm_accuracy"]) == 1.0
    assert float(out["nc2"]) < 1e-6  # the ETF rounded to float32; measured 1.0e-7
    const = cj.diagnose(np.full((N, D), 0.1, np.float32), labels)
    assert float(const["rankme"]) == 0.0 and int(const["numerical_rank"]) == 0
    assert float(const["std_l2_normalized"]) == 0.0 and bool(const["collapsed"])
    assert np.isinf(const["nc1"]) and float(const["ncm_accuracy"]) == 0.0


def test_jax_arrays_and_traced_calls(gram_calls):
    """A JAX array on the CPU takes the Gram route like numpy; a traced call the QR route."""
    z, labels = _data(seed=5)
    z, labels = z[:200], np.abs(labels[:200])
    ref = cj.diagnose(z, labels)
    via_jax = cj.diagnose(jax.numpy.asarray(z), jax.numpy.asarray(labels))
    assert len(gram_calls) == 2
    for key, value in ref.items():
        np.testing.assert_array_equal(via_jax[key], value, err_msg=key)
    traced = jax.jit(lambda a, b: cj.diagnose(a, b, n_classes=K))(z, labels)
    assert len(gram_calls) == 2
    for key in [*SCALARS, *CLASS_SCALARS]:  # measured 1.4e-13 (alpha-ReQ's R^2)
        assert _rel(traced[key], ref[key]) < 1e-12, key


@pytest.mark.parametrize("chunk", [0, -3, 2.5, True, "10"])
def test_bad_chunk_is_refused(chunk):
    with pytest.raises(ValueError, match="chunk must be a positive number of rows"):
        cj.diagnose(np.ones((4, 2), np.float32), chunk=chunk)


def test_nan_is_found_while_streaming():
    z, _ = _data(seed=4)
    z[2500, 3] = np.nan
    for chunk in (None, CHUNK):
        with pytest.raises(ValueError, match="NaN or inf"):
            cj.diagnose(z, chunk=chunk)


# ----------------------------------------------------------------------------- command line


def _cli(capsys, *argv):
    code = main(["diagnose", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_chunk_matches_in_memory_and_reports_throughput(capsys, tmp_path):
    z, labels = _data(seed=1)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "l.npy", labels)
    args = [str(tmp_path / "z.npy"), "--labels", str(tmp_path / "l.npy"), "--json"]
    code, text, _ = _cli(capsys, *args)
    assert code == 0
    whole = json.loads(text)
    code, text, err = _cli(capsys, *args, "--chunk", str(CHUNK))
    assert code == 0 and err == ""  # --json into a pipe: no stderr line
    streamed = json.loads(text)
    assert set(streamed) - set(whole) == {"streaming"}
    for key in [*SCALARS, *CLASS_SCALARS]:  # measured 1.2e-12 (alpha-ReQ), as above
        assert _rel(streamed[key], whole[key]) < 1e-11, key
    rec = streamed["streaming"]
    assert (rec["chunk_rows"], rec["chunks"], rec["passes"]) == (CHUNK, 3, 2)
    assert rec["bytes"] == N * D * 4
    assert rec["limit_gb_s"] == min(rec["copy_gb_s"], rec["reduction_gb_s"]) > 0
    seconds = rec["seconds"] - rec["compile_seconds"]
    np.testing.assert_allclose(rec["throughput_gb_s"], N * D * 4 / seconds / 1e9, rtol=1e-12)
    np.testing.assert_allclose(
        rec["fraction_of_limit"], rec["throughput_gb_s"] / rec["limit_gb_s"], rtol=1e-12
    )
    code, _, err = _cli(capsys, str(tmp_path / "z.npy"), "--chunk", str(CHUNK))
    assert code == 0 and "one-pass limit" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: np.savez(p.with_suffix(".npz"), z=np.ones((4, 2))), "is an .npz"),
        (lambda p: None, "embeddings file not found"),
        (lambda p: np.save(p, np.array([[1.0, 2.0], [np.inf, 0.0]])), "NaN or inf"),
        (lambda p: np.save(p, np.ones(4)), "must be a 2-D array"),
    ],
)
def test_cli_chunk_refusals_are_one_line(make, fragment, capsys, tmp_path):
    path = tmp_path / "z.npy"
    make(path)
    npz = path.with_suffix(".npz")
    path = npz if npz.exists() else path
    code, out, err = _cli(capsys, str(path), "--chunk", "2")
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert fragment in err
