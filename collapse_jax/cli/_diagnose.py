"""``collapse-jax diagnose``: collapse diagnostics of an embeddings file."""

from __future__ import annotations

import argparse
import math
import os
import time
import zipfile

import numpy as np

from ._common import UsageError, _add_int_flag, _add_output_flags, _check_run, _note

COMMAND = "diagnose"


def _rank_range(text):
    try:
        lo, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--fit-range must be KMIN:KMAX (integers), got {text!r}"
        ) from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"--fit-range needs 1 <= KMIN <= KMAX, got {text}")
    return lo, hi


def add_parser(sub):
    sd = sub.add_parser(
        COMMAND, help="collapse diagnostics of an embeddings file (docs/theory.md §5)"
    )
    sd.add_argument("file", help="embeddings, .npy (N x D) or .npz (with --key)")
    sd.add_argument("--key", default=None, help="array name inside an .npz (optional if only one)")
    sd.add_argument(
        "--labels",
        default=None,
        help=".npy (or .npz) of N integer labels (-1: unlabelled sample)",
    )
    sd.add_argument(
        "--labels-key",
        default=None,
        help="array name inside a --labels .npz (optional if only one)",
    )
    sd.add_argument(
        "--plot", default=None, help="write a log-scale spectrum plot to this image file"
    )
    sd.add_argument(
        "--fit-range",
        type=_rank_range,
        default=None,
        metavar="KMIN:KMAX",
        help="ranks (1-based, inclusive) of the alpha-ReQ power-law fit (default: 11:100 as in "
        "reptrix, clipped to the numerical rank; the whole spectrum below rank 20)",
    )
    sd.add_argument(
        "--rankme-eigenvalues",
        action="store_true",
        help="also report RankMe of the eigenvalues (p_k = lambda_k / sum lambda) as "
        "rankme_eigenvalues",
    )
    _add_int_flag(
        sd,
        "--chunk",
        1,
        None,
        "stream a .npy FILE through a memory map, ROWS rows at a time (one pass, two with "
        "--labels), for arrays larger than memory; reports the throughput (default: read whole)",
    )
    _add_output_flags(sd, progress="progress output")


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _size_text(n):
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def _check_npy_header(fh, available, where):
    """Read an .npy header from ``fh`` and refuse object arrays and data the file lacks."""
    try:
        version = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(fh)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as err:
        raise UsageError(
            f"{where}: not a valid .npy/.npz array (unreadable .npy header: {err})".splitlines()[0]
        ) from None
    if dtype.hasobject:
        raise UsageError(
            f"{where} holds Python objects (dtype {dtype}), which are never loaded: save a "
            "numeric array"
        )
    need = math.prod(shape) * dtype.itemsize
    have = available - fh.tell()
    if need > have:
        raise UsageError(
            f"{where}: not a valid .npy/.npz array: its header claims shape {shape} of {dtype} "
            f"({_size_text(need)}) but only {_size_text(max(have, 0))} of data follow (a "
            "truncated or damaged file)"
        )


def _load_npy_or_npz(path, key, what, key_flag="--key", load=True):
    if os.path.isdir(path):
        raise UsageError(f"{what} file {path} is a directory: give a .npy or .npz file")
    if not os.path.exists(path):
        raise UsageError(f"{what} file not found: {path}")
    if not os.path.isfile(path):
        raise UsageError(f"{what} file {path} is not a regular file: give a .npy or .npz file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
            if magic == _NPY_MAGIC:
                fh.seek(0)
                _check_npy_header(fh, os.fstat(fh.fileno()).st_size, f"{what} file {path}")
    except OSError as err:
        raise UsageError(f"cannot read {what} file {path}: {err.strerror}") from None
    if magic != _NPY_MAGIC and not magic.startswith(_ZIP_MAGICS):
        raise UsageError(
            f"cannot read {what} file {path}: not a valid .npy/.npz array (it does not start "
            "with the .npy or .npz signature): save it with numpy.save or numpy.savez"
        )
    if not load:  # the header checks only
        return None
    try:
        obj = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        detail = "" if "pickle" in str(err) else f" ({err})"
        msg = f"cannot read {what} file {path}: not a valid .npy/.npz array{detail}"
        raise UsageError(msg.splitlines()[0]) from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            names = list(obj.files)
            if key is None:
                if len(names) != 1:
                    raise UsageError(
                        f"{what} file {path} holds {len(names)} arrays {names}: choose one "
                        f"with {key_flag}"
                    )
                key = names[0]
            if key not in names:
                raise UsageError(f"{key_flag} {key!r} not in {path} (arrays: {names})")
            where = f"array {key!r} of {what} file {path}"
            try:
                info = obj.zip.getinfo(key if key in obj.zip.namelist() else f"{key}.npy")
                with obj.zip.open(info) as member:
                    _check_npy_header(member, info.file_size, where)
                return obj[key]
            except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
                detail = "" if "pickle" in str(err) else f": {err}"
                raise UsageError(f"cannot read {where}{detail}".splitlines()[0]) from None
    if key is not None:
        raise UsageError(f"{key_flag} applies to .npz files only, {path} holds a single array")
    return obj


def _native(a, what, path):
    """``a`` in native byte order; extended precision (float128) as float64, refused when a
    value lies beyond float64's range."""
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        top = np.max(np.abs(a), initial=0.0)
        if top > np.finfo(np.float64).max:
            raise UsageError(
                f"{what} in {path} exceed the float64 range (largest magnitude {float(top):.4g} "
                f"as {a.dtype}): rescale them before saving"
            )
        return a.astype(np.float64)
    return a.astype(a.dtype.newbyteorder("="), copy=False)


def _load_embeddings(path, key):
    z = _check_embedding_array(_load_npy_or_npz(path, key, "embeddings"))
    bad = ~np.isfinite(z)
    if bad.any():
        raise UsageError(f"embeddings contain {int(bad.sum())} NaN or inf values")
    return _native(z, "embeddings", path)


def _open_embeddings(path, key):
    """The ``--chunk`` reader: the checks of ``_load_embeddings`` that need no pass over the
    data, and a read-only memory map (NaN/inf are found while streaming)."""
    _load_npy_or_npz(path, None, "embeddings", load=False)  # missing, a folder, not an array
    if key is not None:
        raise UsageError(
            "--key selects an array of an .npz file, which --chunk cannot stream: save the "
            "array with numpy.save, or drop --chunk"
        )
    with open(path, "rb") as fh:
        if fh.read(6) != _NPY_MAGIC:
            raise UsageError(
                f"--chunk streams a .npy file through a memory map, {path} is an .npz: save the "
                "array with numpy.save, or drop --chunk"
            )
    try:
        z = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise UsageError(f"cannot map embeddings file {path}: {err}".splitlines()[0]) from None
    _check_embedding_array(z)
    if z.dtype.itemsize > 8:
        raise UsageError(
            f"--chunk reads embeddings of at most 64 bits, {path} holds {z.dtype}: drop --chunk "
            "(the array is then read whole and converted to float64) or save it as float64"
        )
    return z


def _check_embedding_array(z):
    """The checks of an embeddings array that need no pass over its values."""
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
        raise UsageError(f"embeddings must be real numbers, got dtype {z.dtype}")
    if z.ndim != 2:
        raise UsageError(f"embeddings must be a 2-D array (samples, dim), got shape {z.shape}")
    if z.size == 0:
        raise UsageError(f"embeddings are empty, got shape {z.shape}")
    if z.shape[0] < 2:
        raise UsageError(f"need at least 2 samples, got {z.shape[0]}")
    return z


def _load_labels(path, n_samples, key=None):
    lab = _native(_load_npy_or_npz(path, key, "labels", "--labels-key"), "labels", path)
    if lab.ndim != 1:
        raise UsageError(f"labels must be a 1-D array, got shape {lab.shape}")
    if lab.shape[0] != n_samples:
        raise UsageError(f"labels have {lab.shape[0]} entries, embeddings have {n_samples} rows")
    if np.issubdtype(lab.dtype, np.floating) and np.all(np.isfinite(lab)):
        if np.all(lab == np.round(lab)) and np.all(np.abs(lab) < 2**53):
            lab = lab.astype(np.int64)
    if not np.issubdtype(lab.dtype, np.integer) or np.issubdtype(lab.dtype, np.bool_):
        raise UsageError(f"labels must be integers, got dtype {lab.dtype}")
    if lab.min() < -1:
        raise UsageError(f"labels must be >= 0 (or -1 for unlabelled), got {lab.min()}")
    classes = np.unique(lab[lab >= 0])
    if classes.size < 2:
        raise UsageError(f"labels must name at least 2 classes, got {classes.size}")
    if classes.size >= 100_000:
        raise UsageError(f"labels must name fewer than 100000 classes, got {classes.size}")
    return lab.astype(np.int64)  # the classes present are renumbered by diagnose


def _check_plot_path(path):
    """What ``--plot`` refuses beyond the shared output check (``_check_file``, run first by
    ``_check_run``: an existing folder, an unknown image format, an unwritable folder): a
    path ending in a separator names a folder, and the image format must be named."""
    if path.endswith(("/", os.sep)):
        example = os.path.join(path, "spectrum.png")
        raise UsageError(f"--plot {path} is a directory: give an image file, e.g. {example}")
    if not os.path.splitext(path)[1].lstrip("."):
        from matplotlib.backend_bases import FigureCanvasBase

        kinds = FigureCanvasBase.get_supported_filetypes()
        raise UsageError(
            f"--plot {path} must end in an image suffix ({', '.join(sorted(kinds))}), e.g. "
            f"{os.path.splitext(path)[0]}.png"
        )


def _spectrum_plot(path, out):
    from .._plots import save_figure, spectrum_figure

    title = f"RankMe {out['rankme']:.3g} of D={out['dim']}"
    fig = spectrum_figure(
        out["singular_values"],
        out["n_samples"],
        alpha=out["alpha_req"],
        fit_range=out["alpha_req_fit_range"],
        title=title + (" (collapsed)" if out["collapsed"] else ""),
    )
    try:
        return save_figure(fig, path)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot write plot {path}: {err}".splitlines()[0]) from None


def run(args, progress):
    from .._diagnostics import COLLAPSE_RULE, diagnose

    _check_run(args)  # --plot
    if args.labels_key is not None and args.labels is None:
        raise UsageError("--labels-key needs --labels")
    if args.plot is not None:
        _check_plot_path(args.plot)
    chunked = args.chunk is not None
    z = (_open_embeddings if chunked else _load_embeddings)(args.file, args.key)
    labels = None
    if args.labels is not None:
        labels = _load_labels(args.labels, z.shape[0], args.labels_key)
    options = dict(fit_range=args.fit_range, rankme_eigenvalues=args.rankme_eigenvalues)
    if chunked:
        raw, streaming = _stream(z, labels, args, options, progress)
    else:
        raw = diagnose(z, labels, **options)
    out = {k: np.asarray(v) for k, v in raw.items()}
    for key in ("n_samples", "dim", "n_components_95", "numerical_rank"):
        out[key] = int(out[key])
    lo, hi = (int(v) for v in out["alpha_req_fit_range"])
    if args.fit_range is not None and hi < lo + 1:
        rank = out["numerical_rank"]
        raise UsageError(
            f"--fit-range {args.fit_range[0]}:{args.fit_range[1]} has fewer than 2 ranks within "
            f"the numerical rank {rank} of the spectrum: choose KMIN < KMAX <= {rank}"
            if rank >= 2
            else f"--fit-range needs a spectrum of numerical rank >= 2, this one has {rank}"
        )
    out["alpha_req_fit_range"] = [lo, hi]
    out["collapsed"] = bool(out["collapsed"])
    out["alpha_req_poor_fit"] = bool(out["alpha_req_poor_fit"])
    out["collapse_rule"] = COLLAPSE_RULE
    out["file"] = args.file
    for key in ("std_l2_normalized", "rankme", "participation_ratio", "alpha_req"):
        out[key] = float(out[key])
    if labels is not None:
        for key in ("min_l2_class_means", "nc1", "nc2", "ncm_accuracy"):
            out[key] = float(out[key])
        out["n_classes_present"] = int(out["n_classes_present"])
    if chunked:
        out["streaming"] = streaming
    if args.plot is not None:
        out["plot"] = _spectrum_plot(args.plot, out)
    return out


def _one_pass_limit(z, rows):
    """This machine's limit on a one-pass method, in GB/s of the file's data: the lower of the
    memory-copy bandwidth (``np.copyto`` of 64 MiB, best of 3) and the rate of the per-chunk
    reduction (pass 1, without labels, of the route ``diagnose`` takes) on the first chunk
    held in memory (best of 2)."""
    import jax

    from .. import _diagnostics_gram as gram
    from .._diagnostics import _data_rtol, embedding_stats

    src = np.ones(2**23)
    dst = np.empty_like(src)
    copy = []
    for _ in range(3):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        copy.append(time.perf_counter() - t0)
    x = np.array(z[:rows])
    N, D = z.shape
    if gram.gram_route(z.dtype, N, D, _data_rtol(z.dtype, D)):

        def reduce():
            return gram.gram_stats(x, None, 0, rows)
    else:
        x = gram.read_block(x, 0, rows)

        def reduce():
            return jax.block_until_ready(embedding_stats(x))

        reduce()  # compile
    seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        reduce()
        seconds.append(time.perf_counter() - t0)
    return src.nbytes / min(copy) / 1e9, x.nbytes / min(seconds) / 1e9


def _stream(z, labels, args, options, progress):
    """``diagnose`` streaming ``z`` (a memory map) by ``--chunk`` rows, and the ``streaming``
    record: seconds apart from compilation, throughput against the one-pass limit."""
    import jax

    from .._cache import compile_clock
    from .._diagnostics import diagnose

    t0 = time.perf_counter()
    with compile_clock() as clock:  # tracing, lowering and compiling, set apart
        try:
            raw = jax.block_until_ready(diagnose(z, labels, chunk=args.chunk, **options))
        except ValueError as err:
            if "NaN or inf" not in str(err):
                raise
            raise UsageError(f"embeddings in {args.file} contain NaN or inf values") from None
    seconds = time.perf_counter() - t0
    compiled = clock.trace + clock.compile
    stream_seconds = max(seconds - compiled, 1e-9)
    rows = min(args.chunk, z.shape[0])
    copy, reduction = _one_pass_limit(z, rows)
    limit = min(copy, reduction)
    rate = z.nbytes / stream_seconds / 1e9
    record = {
        "chunk_rows": args.chunk,
        "chunks": -(-z.shape[0] // args.chunk),
        "passes": 1 if labels is None else 2,
        "bytes": int(z.nbytes),
        "seconds": seconds,
        "compile_seconds": compiled,
        "throughput_gb_s": rate,
        "copy_gb_s": copy,
        "reduction_gb_s": reduction,
        "limit_gb_s": limit,
        "fraction_of_limit": rate / limit,
    }
    _note(
        progress,
        f"streamed {z.nbytes / 1e9:.3g} GB in {record['passes']} pass(es) of "
        f"{record['chunks']} chunk(s): {rate:.3g} GB/s, {rate / limit:.0%} of this machine's "
        f"one-pass limit {limit:.3g} GB/s (memory copy {copy:.3g} GB/s, per-chunk reduction "
        f"{reduction:.3g} GB/s); {stream_seconds:.3g} s, compilation ({compiled:.2g} s) apart",
    )
    return raw, record


def print_human(out):
    verdict = "COLLAPSED" if out["collapsed"] else "not collapsed"
    print(f"{out['file']}: N={out['n_samples']} samples, D={out['dim']}: {verdict}")
    print(f"  rule: {out['collapse_rule']}")
    print(
        f"  std of L2-normalised embeddings {out['std_l2_normalized']:.4g} "
        f"(isotropic 1/sqrt(D) = {1 / math.sqrt(out['dim']):.4g})"
    )
    print(
        f"  RankMe {out['rankme']:.4g}, participation ratio "
        f"{out['participation_ratio']:.4g}, {out['n_components_95']} components for 95% "
        f"variance, numerical rank {out['numerical_rank']}"
    )
    lo, hi = out["alpha_req_fit_range"]
    poor = ""
    if not math.isfinite(out["alpha_req"]):
        poor = " NO FIT (fewer than 2 eigenvalues in range)"
    elif out["alpha_req_poor_fit"]:
        poor = " POOR FIT (R^2 < 0.9: not a power law over these ranks)"
    print(
        f"  alpha-ReQ {out['alpha_req']:.4g} (R^2 {float(out['alpha_req_r2']):.4g}, "
        f"ranks {lo}-{hi}){poor}"
    )
    if "rankme_eigenvalues" in out:
        print(f"  RankMe of the eigenvalues (variant) {float(out['rankme_eigenvalues']):.4g}")
    if "nc1" in out:
        print(
            f"  {out['n_classes_present']} classes: MinL2 of class means "
            f"{out['min_l2_class_means']:.4g}, NC1 {out['nc1']:.4g}, NC2 {out['nc2']:.4g}, "
            f"nearest-class-mean accuracy {out['ncm_accuracy']:.4g}"
        )
    if "plot" in out:
        print(f"  spectrum plot: {out['plot']}")
