"""``collapse-jax diagnose``: collapse diagnostics of an embeddings file."""

from __future__ import annotations

import argparse
import math
import os
import zipfile

import numpy as np

from ._common import UsageError, _add_output_flags

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
        "--labels", default=None, help=".npy of N integer labels (-1: unlabelled sample)"
    )
    sd.add_argument("--plot", default=None, help="write a log-scale spectrum plot to this path")
    sd.add_argument(
        "--fit-range",
        type=_rank_range,
        default=None,
        metavar="KMIN:KMAX",
        help="ranks (1-based, inclusive) of the alpha-ReQ power-law fit (default: all "
        "eigenvalues above the round-off tolerance)",
    )
    sd.add_argument(
        "--rankme-eigenvalues",
        action="store_true",
        help="also report RankMe of the eigenvalues (p_k = lambda_k / sum lambda) as "
        "rankme_eigenvalues",
    )
    _add_output_flags(sd, progress="progress output")


def _load_npy_or_npz(path, key, what):
    if not os.path.isfile(path):
        raise UsageError(f"{what} file not found: {path}")
    try:
        obj = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        msg = f"cannot read {what} file {path}: not a valid .npy/.npz array ({err})"
        raise UsageError(msg.splitlines()[0]) from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            names = list(obj.files)
            if key is None:
                if len(names) != 1:
                    raise UsageError(
                        f"{path} holds {len(names)} arrays {names}: choose one with --key"
                    )
                key = names[0]
            if key not in names:
                raise UsageError(f"--key {key!r} not in {path} (arrays: {names})")
            try:
                return obj[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
                msg = f"cannot read array {key!r} of {path}: {err}"
                raise UsageError(msg.splitlines()[0]) from None
    if key is not None:
        raise UsageError(f"--key applies to .npz files only, {path} holds a single array")
    return obj


def _load_embeddings(path, key):
    z = _load_npy_or_npz(path, key, "embeddings")
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
        raise UsageError(f"embeddings must be real numbers, got dtype {z.dtype}")
    if z.ndim != 2:
        raise UsageError(f"embeddings must be a 2-D array (samples, dim), got shape {z.shape}")
    if z.size == 0:
        raise UsageError(f"embeddings are empty, got shape {z.shape}")
    if z.shape[0] < 2:
        raise UsageError(f"need at least 2 samples, got {z.shape[0]}")
    bad = ~np.isfinite(z)
    if bad.any():
        raise UsageError(f"embeddings contain {int(bad.sum())} NaN or inf values")
    return z


def _load_labels(path, n_samples):
    lab = _load_npy_or_npz(path, None, "labels")
    if lab.ndim != 1:
        raise UsageError(f"labels must be a 1-D array, got shape {lab.shape}")
    if lab.shape[0] != n_samples:
        raise UsageError(f"labels have {lab.shape[0]} entries, embeddings have {n_samples} rows")
    if np.issubdtype(lab.dtype, np.floating) and np.all(np.isfinite(lab)):
        if np.all(lab == np.round(lab)):
            lab = lab.astype(np.int64)
    if not np.issubdtype(lab.dtype, np.integer) or np.issubdtype(lab.dtype, np.bool_):
        raise UsageError(f"labels must be integers, got dtype {lab.dtype}")
    if lab.min() < -1:
        raise UsageError(f"labels must be >= 0 (or -1 for unlabelled), got {lab.min()}")
    classes = np.unique(lab[lab >= 0])
    if classes.size < 2:
        raise UsageError(f"labels must name at least 2 classes, got {classes.size}")
    if classes.max() >= 100_000:
        raise UsageError(f"labels must be < 100000, got {classes.max()}")
    return lab.astype(np.int32)


def _spectrum_plot(path, out):
    from .._plots import save_figure, spectrum_figure

    title = f"RankMe {out['rankme']:.3g} of D={out['dim']}"
    fig = spectrum_figure(
        out["singular_values"],
        out["n_samples"],
        alpha=out["alpha_req"],
        fit_range=out.get("alpha_req_fit_range"),
        title=title + (" (collapsed)" if out["collapsed"] else ""),
    )
    try:
        save_figure(fig, path)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot write plot {path}: {err}".splitlines()[0]) from None


def run(args, progress):
    from .._diagnostics import COLLAPSE_RULE, diagnose

    z = _load_embeddings(args.file, args.key)
    labels = None if args.labels is None else _load_labels(args.labels, z.shape[0])
    raw = diagnose(z, labels, fit_range=args.fit_range, rankme_eigenvalues=args.rankme_eigenvalues)
    out = {k: np.asarray(v) for k, v in raw.items()}
    for key in ("n_samples", "dim", "n_components_95", "numerical_rank"):
        out[key] = int(out[key])
    out["collapsed"] = bool(out["collapsed"])
    out["collapse_rule"] = COLLAPSE_RULE
    out["file"] = args.file
    if args.fit_range is not None:
        out["alpha_req_fit_range"] = list(args.fit_range)
    for key in ("std_l2_normalized", "rankme", "participation_ratio", "alpha_req"):
        out[key] = float(out[key])
    if labels is not None:
        for key in ("min_l2_class_means", "nc1", "nc2", "ncm_accuracy"):
            out[key] = float(out[key])
        out["n_classes_present"] = int(out["n_classes_present"])
    if args.plot is not None:
        _spectrum_plot(args.plot, out)
        out["plot"] = args.plot
    return out


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
    print(f"  alpha-ReQ {out['alpha_req']:.4g} (R^2 {float(out['alpha_req_r2']):.4g})")
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
