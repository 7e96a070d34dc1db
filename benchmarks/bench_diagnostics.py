"""``diagnose`` against the peers and against numpy, warm and cold; ``--chunk`` streaming.

Problem: `N = 20000` float32 embeddings of `D = 768` (rank-64 signal with a power-law
spectrum, isotropic noise, ten shifted classes, an offset; the same array in every process
from ``default_rng(0)``), with and without its labels. Side by side:

1. ``collapse_jax.diagnose`` (every metric; with labels also NC1, NC2, MinL2, NCM accuracy),
   at the package's BLAS setting (one OpenBLAS thread) and with every core;
2. the peers: reptrix's ``get_rankme`` and ``get_alpha`` and lightly's
   ``std_of_l2_normalized``, when they import (they need PyTorch); otherwise faithful numpy /
   scikit-learn reimplementations of the same functions (two ``PCA(svd_solver="full")`` fits of
   the centred array, reptrix's weighted power-law fit with ``r2_score``, float32 row
   normalisation and the unbiased std). The record says which ran;
3. what a user writes by hand: ``np.linalg.svd(z - z.mean(0), compute_uv=False)`` in float32,
   then RankMe, alpha-ReQ (``np.polyfit`` over ranks 11..100) and the std of the normalised rows.

The peers and numpy run in processes that never import collapse_jax, once with one BLAS thread
and once with every core; each ratio is taken against the faster of the two. **Warm**: the
median of ``--repeats`` calls after a first one. **Cold**: the first call in a fresh process,
compilation included (JAX's persistent cache off); imports and building the data are timed
apart. A cold call with a persistent cache filled by an earlier process is recorded too.

Accuracy: ``diagnose`` of the float32 array against the QR route on the same numbers in float64
and against ``np.linalg.svd`` in float64 (and numpy's float32 SVD against the same reference).

Streaming: a `200000 x 768` float32 file (614 MB, written under the temporary folder and
deleted afterwards; ``--stream-rows`` changes the size) diagnosed from a memory map by chunks of
``--chunk`` rows against the array loaded in memory, compilation apart, with and without
labels; the command line's ``--chunk`` record (throughput against this machine's one-pass limit:
the lower of the memory-copy bandwidth and the per-chunk reduction rate) beside it. The file is
read from the page cache (it was just written): the disk is not measured.

Writes ``benchmarks/results/diagnostics.json``; about 6 minutes on 2 cores.

    .venv/bin/python benchmarks/bench_diagnostics.py [--quick] [--repeats 7] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RANK, CLASSES = 64, 10


def make_data(N, D, seed=0):
    """float32 embeddings: a rank-64 signal (variances 1/k), noise 0.1, class shifts, offset 1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, N)
    centres = rng.standard_normal((CLASSES, D)).astype(np.float32)
    scale = (np.arange(1, RANK + 1) ** -0.5).astype(np.float32)
    latent = rng.standard_normal((N, RANK)).astype(np.float32) * scale
    mix = rng.standard_normal((RANK, D)).astype(np.float32)
    z = latent @ mix + 0.1 * rng.standard_normal((N, D), dtype=np.float32)
    return (z + 0.5 * centres[labels] + 1.0).astype(np.float32), labels


# ----------------------------------------------------------------------------- the peers


def peers_functions():
    """(name of what runs, {metric: function of z}) for reptrix + lightly."""
    try:
        import torch
        from lightly.utils.debug import std_of_l2_normalized
        from reptrix.alpha import get_alpha
        from reptrix.rankme import get_rankme

        def as_tensor(z):
            return torch.from_numpy(z)

        return "reptrix and lightly (installed)", {
            "rankme": lambda z: get_rankme(as_tensor(z)),
            "alpha": lambda z: get_alpha(as_tensor(z))[0],
            "std": lambda z: float(std_of_l2_normalized(as_tensor(z))),
        }
    except ImportError as err:
        reason = f"{err.name or err} not importable"
    from sklearn.decomposition import PCA
    from sklearn.metrics import r2_score

    def eigenspectrum(z, max_eigenvals=2048):  # reptrix.utils.get_eigenspectrum
        feats = z.reshape(z.shape[0], -1)
        centred = feats - feats.mean(axis=0)
        n = min(max_eigenvals, centred.shape[0], centred.shape[1])
        return PCA(n_components=n, svd_solver="full").fit(centred).explained_variance_ratio_

    def rankme(z):  # reptrix.rankme.get_rank(get_eigenspectrum(z))
        eigen = eigenspectrum(z)
        p = eigen / np.sum(np.abs(eigen)) + 1e-7
        return float(np.exp(-np.sum(p * np.log(p))))

    def alpha(z, trange=None):  # reptrix.alpha.get_powerlaw, default range np.arange(10, 100)
        eigen = eigenspectrum(z)
        trange = np.arange(10, 100) if trange is None else trange
        logss = np.log(np.abs(eigen))
        y = logss[trange][:, None]
        trange = trange + 1
        x = np.concatenate((-np.log(trange)[:, None], np.ones((trange.size, 1))), axis=1)
        w = 1.0 / trange.astype(np.float32)[:, None]
        b = np.linalg.solve(x.T @ (x * w), (w * x).T @ y).flatten()
        allrange = np.arange(1, eigen.size + 1)
        xa = np.concatenate((-np.log(allrange)[:, None], np.ones((eigen.size, 1))), axis=1)
        ypred = np.exp((xa * b).sum(axis=1))
        top = 500 if len(eigen) >= 512 else len(eigen) - 10
        r2_score(logss[trange[0] : top], np.log(np.abs(ypred))[trange[0] : top])
        return float(b[0])

    def std(z):  # lightly: F.normalize(z, dim=1), then torch.std(dim=0).mean() (ddof 1)
        zn = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return float(zn.std(axis=0, ddof=1).mean())

    return f"numpy/scikit-learn reimplementation ({reason})", {
        "rankme": rankme,
        "alpha": alpha,
        "std": std,
    }


def numpy_by_hand(z):
    """What a user writes: the float32 SVD of the centred array, then the metrics from it."""
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    lam = s.astype(np.float64) ** 2
    k = np.arange(1, lam.size + 1)
    alpha = -np.polyfit(np.log(k[10:100]), np.log(lam[10:100]), 1)[0]
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    return float(np.exp(-np.sum(p * np.log(p)))), float(alpha), float(u.std(0).mean())


# ----------------------------------------------------------------------------- workers


METHODS = ("collapse_jax_unlabelled", "collapse_jax_labelled", "numpy_svd", "peers")


def method(name):
    """(what runs, call(z, labels)) for one of ``METHODS``."""
    if name.startswith("collapse_jax"):
        import jax

        import collapse_jax as cj

        jax.config.update("jax_enable_x64", True)
        labelled = name == "collapse_jax_labelled"

        def call(z, labels):
            return jax.block_until_ready(cj.diagnose(z, labels if labelled else None))

        return "collapse_jax.diagnose", call
    if name == "peers":
        what, funcs = peers_functions()
        return what, lambda z, labels: [f(z) for f in funcs.values()]
    return "numpy float32 SVD by hand", lambda z, labels: numpy_by_hand(z)


def worker(args):
    """Measurements in this (fresh) process; prints one JSON line. ``interleaved``: every
    method in turn, ``--repeats`` rounds after a first one (slow drifts of the machine's load
    hit all alike); otherwise one method, its first call and ``--repeats`` more."""
    from threadpoolctl import threadpool_info

    names = METHODS if args.worker == "interleaved" else (args.worker,)
    t0 = time.perf_counter()
    calls = {name: method(name) for name in names}
    import_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    z, labels = make_data(args.n, args.d)
    data_seconds = time.perf_counter() - t0
    times = {name: [] for name in names}
    for _ in range(1 + args.repeats):
        for name in names:
            t0 = time.perf_counter()
            calls[name][1](z, labels)
            times[name].append(time.perf_counter() - t0)
    threads = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
    record = {
        name: {
            "what": calls[name][0],
            "first_call_seconds": t[0],
            "repeats": t[1:],
            "median_seconds": float(np.median(t[1:])) if args.repeats else None,
        }
        for name, t in times.items()
    }
    record.update(import_seconds=import_seconds, data_seconds=data_seconds, blas_threads=threads)
    print(json.dumps(record))


def run_worker(name, n, d, repeats, threads):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "COLLAPSE_JAX_CACHE": "0"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    cmd = [sys.executable, __file__, "--worker", name, "--n", str(n), "--d", str(d)]
    done = subprocess.run(
        [*cmd, "--repeats", str(repeats)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- accuracy


def accuracy(n, d):
    import jax

    import collapse_jax as cj

    jax.config.update("jax_enable_x64", True)

    z, labels = make_data(n, d)
    z64 = z.astype(np.float64)
    rtol = 10 * d * float(np.finfo(np.float32).eps)
    out = cj.diagnose(z, labels)
    qr = cj.diagnose(z64, labels, rtol=rtol)  # the QR route on the same numbers in float64
    s_ref = np.linalg.svd(z64 - z64.mean(0), compute_uv=False)
    s = np.asarray(out["singular_values"])
    keep = s > 0
    s32 = np.linalg.svd(z - z.mean(0), compute_uv=False).astype(np.float64)

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))

    keys = ["rankme", "participation_ratio", "alpha_req", "alpha_req_r2", "std_l2_normalized"]
    keys += ["nc1", "nc2", "min_l2_class_means", "ncm_accuracy"]
    return {
        "reference": "np.linalg.svd in float64 of the centred float64 copy; diagnose's QR route "
        "on that copy with the float32 cut",
        "numerical_rank": int(out["numerical_rank"]),
        "smallest_kept_over_largest": float(s[keep][-1] / s[0]),
        "singular_values_max_rel_error": rel(s[keep], s_ref[keep]),
        "qr_route_singular_values_max_rel_error": rel(
            np.asarray(qr["singular_values"])[keep], s_ref[keep]
        ),
        "numpy_float32_svd_max_rel_error": rel(s32[keep], s_ref[keep]),
        "metrics_rel_diff_vs_qr_route": {k: rel(out[k], qr[k]) for k in keys},
        "rankme_numpy_float32_rel_error": rel(numpy_by_hand(z)[0], float(cj.rankme(s_ref))),
    }


# ----------------------------------------------------------------------------- streaming


def streaming(rows_total, d, chunk):
    import jax

    import collapse_jax as cj
    from collapse_jax.cli._diagnose import _one_pass_limit

    jax.config.update("jax_enable_x64", True)
    folder = tempfile.mkdtemp(prefix="bench_diagnostics_")
    path, lpath = os.path.join(folder, "z.npy"), os.path.join(folder, "labels.npy")
    try:
        need = rows_total * d * 4
        if shutil.disk_usage(folder).free < 3 * need:
            return {"skipped": f"less than {3 * need / 1e9:.2g} GB free in {folder}"}
        z_file = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows_total, d))
        labels = np.empty(rows_total, np.int64)
        block = 20000
        for i, a in enumerate(range(0, rows_total, block)):
            zb, lb = make_data(min(block, rows_total - a), d, seed=100 + i)
            z_file[a : a + zb.shape[0]] = zb
            labels[a : a + zb.shape[0]] = lb
        z_file.flush()
        del z_file
        np.save(lpath, labels)
        t0 = time.perf_counter()
        z = np.load(path)
        load_seconds = time.perf_counter() - t0
        mapped = np.load(path, mmap_mode="r")
        rec = {
            "rows": rows_total,
            "dim": d,
            "bytes": int(z.nbytes),
            "chunk_rows": chunk,
            "load_seconds": load_seconds,
        }

        def timed(f, *a, **k):
            t0 = time.perf_counter()
            jax.block_until_ready(f(*a, **k))
            return time.perf_counter() - t0

        for name, lab in (("unlabelled", None), ("labelled", labels)):
            # compile first, on a prefix with the same blocks of rows
            pre = None if lab is None else lab[: 2 * chunk]
            timed(cj.diagnose, z[: 2 * chunk], pre)
            timed(cj.diagnose, mapped[: 2 * chunk], pre, chunk=chunk)
            memory = timed(cj.diagnose, z, lab)
            stream = timed(cj.diagnose, mapped, lab, chunk=chunk)
            rec[name] = {
                "in_memory_seconds": memory,
                "streaming_seconds": stream,
                "streaming_over_in_memory": stream / memory,
                "throughput_gb_s": z.nbytes / stream / 1e9,
            }
        copy, reduction = _one_pass_limit(mapped, min(chunk, rows_total))
        rec.update(copy_gb_s=copy, reduction_gb_s=reduction, limit_gb_s=min(copy, reduction))
        for name in ("unlabelled", "labelled"):
            rec[name]["fraction_of_limit"] = rec[name]["throughput_gb_s"] / rec["limit_gb_s"]
        z = mapped = None  # free the array before the command line runs
        cli = {}
        for name, extra in (("unlabelled", []), ("labelled", ["--labels", lpath])):
            cmd = [sys.executable, "-m", "collapse_jax.cli", "diagnose", path, "--json"]
            cmd += ["--chunk", str(chunk), *extra]
            env = {**os.environ, "COLLAPSE_JAX_CACHE": "0"}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            cli[name] = json.loads(done.stdout)["streaming"]
        rec["command_line"] = cli
        return rec
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--stream-rows", type=int, default=200_000)
    p.add_argument("--chunk", type=int, default=20_000)
    p.add_argument("--out", default=os.path.join(HERE, "results", "diagnostics.json"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=20_000, help=argparse.SUPPRESS)
    p.add_argument("--d", type=int, default=768, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    n, d, stream_rows = (args.n, args.d, args.stream_rows)
    if args.quick:
        n, d, stream_rows, args.repeats, args.chunk = 4000, 128, 40_000, 3, 10_000
    cores = os.cpu_count()
    # warm, one BLAS thread (the package's setting): every method in one process, in turn
    inter = run_worker("interleaved", n, d, args.repeats, 1)
    warm = {"one_thread": {name: inter[name] for name in METHODS}, "all_cores": {}}
    warm["one_thread_process"] = {k: inter[k] for k in ("import_seconds", "blas_threads")}
    for name in METHODS:  # warm with every core: a process each
        reps = 2 if name == "peers" else max(3, args.repeats // 2)
        warm["all_cores"][name] = run_worker(name, n, d, reps, cores)[name]
    for setting, table in warm.items():
        for name in METHODS if setting != "one_thread_process" else ():
            print(f"warm {setting} {name}: median {table[name]['median_seconds']:.3f} s")
    # cold: the first call in a fresh process, three processes each, median
    cold = {"one_thread": {}, "all_cores": {}}
    for setting, threads in (("one_thread", 1), ("all_cores", cores)):
        for name in METHODS:
            if name.startswith("collapse_jax") and setting == "all_cores":
                continue
            runs = [run_worker(name, n, d, 0, threads) for _ in range(3)]
            cold[setting][name] = {
                "first_call_seconds": [r[name]["first_call_seconds"] for r in runs],
                "median_seconds": float(np.median([r[name]["first_call_seconds"] for r in runs])),
                "import_seconds": [r["import_seconds"] for r in runs],
            }
            print(f"cold {setting} {name}: median {cold[setting][name]['median_seconds']:.3f} s")

    def best(table, name):
        return min(table["one_thread"][name]["median_seconds"],
                   table["all_cores"][name]["median_seconds"])  # fmt: skip

    ratios = {}
    for variant in ("unlabelled", "labelled"):
        ours = f"collapse_jax_{variant}"
        ours_w = warm["one_thread"][ours]["median_seconds"]
        ours_c = cold["one_thread"][ours]["median_seconds"]
        ratios[variant] = {
            "warm_peers_over_ours": best(warm, "peers") / ours_w,
            "warm_numpy_svd_over_ours": best(warm, "numpy_svd") / ours_w,
            "cold_peers_over_ours": best(cold, "peers") / ours_c,
            "cold_numpy_svd_over_ours": best(cold, "numpy_svd") / ours_c,
        }
        for key, value in ratios[variant].items():
            print(f"{variant}: {key} = {value:.2f}")
    acc = accuracy(n, d)
    print(
        f"accuracy: singular values {acc['singular_values_max_rel_error']:.2g} (QR route "
        f"{acc['qr_route_singular_values_max_rel_error']:.2g}, numpy float32 "
        f"{acc['numpy_float32_svd_max_rel_error']:.2g})"
    )
    stream = streaming(stream_rows, d, args.chunk)
    for name in ("unlabelled", "labelled"):
        if name in stream:
            r = stream[name]
            print(
                f"streaming {name}: {r['throughput_gb_s']:.3g} GB/s, "
                f"{r['fraction_of_limit']:.0%} of the limit {stream['limit_gb_s']:.3g} GB/s; "
                f"streaming / in memory = {r['streaming_over_in_memory']:.2f}"
            )
    sys.path.insert(0, HERE)
    from _record import save_record

    record = {
        "problem": {
            "N": n,
            "D": d,
            "dtype": "float32",
            "data": f"rank-{RANK} signal (variances 1/k) + noise 0.1 + {CLASSES} class shifts "
            "0.5 + offset 1, default_rng(0)",
            "classes": CLASSES,
        },
        "quick": args.quick,
        "peers_implementation": warm["one_thread"]["peers"]["what"],
        "warm": warm,
        "cold": cold,
        "ratios": ratios,
        "accuracy": acc,
        "streaming": stream,
    }
    print("wrote", save_record(record, args.out))


if __name__ == "__main__":
    main()
