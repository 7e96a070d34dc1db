"""``collapse-jax network``: an MLP encoder and label embeddings trained on real data under
frustration (docs/theory.md §7); also the network pieces of ``collapse-jax sweep``.

Every default is read from the library ([`NetworkConfig`][collapse_jax.NetworkConfig],
[`DEFAULT_LR`][collapse_jax.DEFAULT_LR], the signatures of
[`network_run`][collapse_jax.network_run] and [`network_data`][collapse_jax.network_data]), so
the command line trains what a library call with no arguments trains.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
import time

import numpy as np

from ._common import (
    DEFAULTS,
    UsageError,
    _add_int_flag,
    _add_output_flags,
    _add_positive_flag,
    _add_seed_flag,
    _check_out,
    _check_run,
    _checked_number,
    _jsonable,
    _note,
)

COMMAND = "network"

# the JSON keys of one run, in order: the contract (docs/cli.md), then the documented extras
CONTRACT_KEYS = (
    "step",
    "loss",
    "min_l2",
    "accuracy",
    "accuracy_test",
    "peak_accuracy",
    "peak_step",
    "final_accuracy",
    "final_min_l2",
    "collapse_step",
    "slow_rate_fit",
    "power_law_exponent",
    "frustration",
    "shared",
)
EXTRA_KEYS = (
    "min_l2_means",
    "rankme",
    "std",
    "nc1",
    "accuracy_drop",
    "min_l2_at_peak",
    "better_fit",
)
# the sweep's network flags that the minimal models do not take (dest, flag)
SWEEP_ONLY = (
    ("data", "--data"),
    ("steps", "--steps"),
    ("lr", "--lr"),
    ("variant", "--variant"),
    ("width", "--width"),
    ("optimizer", "--optimizer"),
    ("batch_size", "--batch-size"),
)
SWEEP_FILE = "sweep_network.npz"


def _defaults():
    """The library's defaults: the config, the learning rate, the ratio, the test fraction."""
    from .._network import DEFAULT_LR, NetworkConfig, network_run
    from .._network_data import network_data

    run = inspect.signature(network_run).parameters
    data = inspect.signature(network_data).parameters
    return dict(
        config=NetworkConfig(),
        lr=DEFAULT_LR,
        frustration=run["frustration"].default,
        test_fraction=data["test_fraction"].default,
    )


def _fraction(flag):
    """A number in [0, 1) (its errors name ``flag``)."""

    def ok(value):
        return math.isfinite(value) and 0.0 <= value < 1.0

    return _checked_number(flag, float, "a number", ok, "lie in [0, 1)", echo_text=True)


def _non_negative(flag):
    def ok(value):
        return math.isfinite(value) and value >= 0

    return _checked_number(flag, float, "a number", ok, "be a finite number >= 0", echo_text=True)


def _add_data_flag(p):
    from .._network_data import DATASETS

    p.add_argument(
        "--data",
        default=None,
        metavar="NAME|FILE.npz",
        help=f"a bundled data set ({', '.join(DATASETS)}; default {DATASETS[0]}) or an .npz "
        "file with arrays X (samples x inputs) and integer labels",
    )


def _add_training_flags(p, defaults, *, sweep=False):
    """``--variant --steps --lr --width --optimizer --batch-size`` (and, for the command
    itself, ``--depth --activation --weight-decay``). In the sweep they default to ``None``
    (given only with ``--model network``), the library's default filled in later."""
    from .._models.network import ACTIVATIONS, VARIANTS
    from .._network import OPTIMIZERS

    c = defaults["config"]

    def default(value):
        return None if sweep else value

    p.add_argument(
        "--variant",
        choices=list(VARIANTS),
        default=default(c.variant),
        help=f"loss: plain, projection, stop-gradient or a mechanism (default {c.variant})",
    )
    _add_int_flag(p, "--steps", 1, default(c.steps), f"optimiser updates (default {c.steps})")
    _add_positive_flag(
        p, "--lr", default(defaults["lr"]), f"learning rate (default {defaults['lr']})"
    )
    p.add_argument(
        "--optimizer",
        choices=list(OPTIMIZERS),
        default=default(c.optimizer),
        help=f"sgd, momentum (heavy ball, 0.9) or adam (default {c.optimizer})",
    )
    _add_int_flag(
        p,
        "--batch-size",
        1,
        None,
        "samples per step, drawn without replacement (default: the full training set)",
    )
    _add_int_flag(p, "--width", 1, default(c.width), f"hidden units per layer (default {c.width})")
    if sweep:
        return
    _add_int_flag(p, "--depth", 0, c.depth, f"hidden layers, 0: linear (default {c.depth})")
    p.add_argument(
        "--activation",
        choices=list(ACTIVATIONS),
        default=c.activation,
        help=f"hidden-layer activation (default {c.activation})",
    )
    _add_int_flag(p, "--dim", 1, c.dim, f"embedding dimension d (default {c.dim})")
    p.add_argument(
        "--weight-decay",
        type=_non_negative("--weight-decay"),
        default=c.weight_decay,
        help=f"decoupled weight decay on every trained array (default {c.weight_decay})",
    )


def add_parser(sub):
    defaults = _defaults()
    np_ = sub.add_parser(
        COMMAND,
        help="train an MLP encoder and label embeddings on real data under frustration",
    )
    g = np_.add_argument_group("data")
    _add_data_flag(g)
    g.add_argument(
        "--test-fraction",
        type=_fraction("--test-fraction"),
        default=defaults["test_fraction"],
        help="share of every class held out for the test accuracy, in [0, 1) (default %(default)s)",
    )
    g.add_argument(
        "--balance", action="store_true", help="subsample every class to the smallest's size"
    )
    g.add_argument(
        "--frustration",
        type=_fraction("--frustration"),
        default=defaults["frustration"],
        help="ratio phi in [0, 1) of shared training samples (default %(default)s)",
    )
    m = np_.add_argument_group("model and training")
    _add_training_flags(m, defaults)
    _add_seed_flag(m, "the shared samples, the encoder, the labels and the minibatches")
    m.add_argument(
        "--float32", action="store_true", help="train in float32 (faster; default float64)"
    )
    out = np_.add_argument_group("output")
    out.add_argument(
        "--figure",
        default=None,
        metavar="PATH",
        help="also train the stop-gradient variant (plain if --variant is stop-gradient) from "
        "the same start and write a figure: accuracy, loss and MinL2 against the step",
    )
    _add_output_flags(out)


# --- data, sizes -------------------------------------------------------------------------


def load_data(name, *, test_fraction=None, balance=False, float32=False):
    """The data set ``--data`` names (bundled name or ``.npz`` path); bad data is bad input."""
    import jax.numpy as jnp

    from .._network_data import DATASETS, digits_data, load_network_npz

    name = DATASETS[0] if name is None else name
    kw = dict(balance=balance, dtype=jnp.float32 if float32 else None)
    if test_fraction is not None:
        kw["test_fraction"] = test_fraction
    if name not in DATASETS and not (name.endswith(".npz") or os.path.exists(name)):
        raise UsageError(
            f"--data must be one of {', '.join(DATASETS)} or an .npz file with arrays X and "
            f"labels, got {name!r}"
        )
    if os.path.isdir(name):
        raise UsageError(f"--data {name!r} is a directory, not an .npz file")
    try:
        if name in DATASETS:
            return {"digits": digits_data}[name](**kw)
        return load_network_npz(name, **kw)
    except ValueError as err:
        message = str(err)
        prefix = "--data: " if message.startswith("data file") else f"--data {name!r}: "
        raise UsageError(prefix + message) from None


def _parameters(n_inputs, width, depth, dim):
    sizes = [n_inputs] + [width] * depth + [dim]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def network_bytes(data, config, members: int = 1) -> int:
    """The main arrays of ``members`` trainings at once: the encoder with its gradient, held
    copy and optimiser moments, the hidden activations of the training and test inputs (with
    their backward copies), the sample-by-class scores and the records."""
    from .._network import RECORDED, network_steps

    itemsize = np.dtype(data.X.dtype).itemsize
    n, n_test, K, d = data.n_samples, int(data.X_test.shape[0]), data.n_classes, config.dim
    hidden = config.width * config.depth + d
    params = _parameters(data.n_inputs, config.width, config.depth, d) + 3 * (K * d + d * d)
    T = len(network_steps(config.steps, config.points, config.late))
    per_member = 5 * params + 4 * n * hidden + n_test * hidden + 2 * (n + n_test) * K
    per_member += len(RECORDED) * T
    return itemsize * (members * per_member + (n + n_test) * data.n_inputs)


def check_size(data, config, members=1, *, limit=None, flags=""):
    """Refuse a training whose main arrays would not fit (or exceed ``limit``)."""
    from .._limits import memory_refusal

    need = network_bytes(data, config, members)
    reason = memory_refusal(need, limit=limit, devices=None if members > 1 else 1)
    if reason is not None:
        hint = ", or --max-memory SIZE to override" if flags.startswith("sweep") else ""
        raise UsageError(
            f"{flags or 'network'} --width {config.width} --dim {config.dim} on "
            f"{data.n_samples} training samples {reason}: use smaller sizes{hint}"
        )


def _check_batch(args, data):
    if args.batch_size is not None and args.batch_size > data.n_samples:
        raise UsageError(
            f"--batch-size must be <= the {data.n_samples} training samples of "
            f"{data.name!r}, got {args.batch_size}"
        )


# --- one training ------------------------------------------------------------------------


#: The flags of a training's configuration (``network``; ``sweep --model network`` has the
#: first six).
_CONFIG_FLAGS = (
    "variant", "steps", "dim", "width", "optimizer", "batch_size",
    "depth", "activation", "weight_decay",
)  # fmt: skip


def _config(args, defaults, flags=_CONFIG_FLAGS):
    """The default configuration with every flag of ``flags`` the user gave (not None)."""
    given = {k: getattr(args, k) for k in flags}
    return defaults["config"]._replace(**{k: v for k, v in given.items() if v is not None})


def _train(data, config, args, progress, label):
    """One ``network_run``, with a progress bar (one tick per record step) on stderr."""
    from .._network import network_run, network_steps

    bar = None
    if progress:
        from tqdm import tqdm

        total = len(network_steps(config.steps, config.points, config.late))
        bar = tqdm(total=total, desc=label, unit="record", file=sys.stderr)
    try:
        return network_run(
            data,
            frustration=args.frustration,
            seed=args.seed,
            lr=args.lr,
            config=config,
            progress=None if bar is None else (lambda loss: bar.update(1)),
        )
    finally:
        if bar is not None:
            bar.close()


def _report(run, variant):
    """The JSON object of one training: contract keys first, ``collapse_step`` an int."""
    out = {k: run[k] for k in CONTRACT_KEYS}
    out["peak_step"] = int(run["peak_step"])
    c = run["collapse_step"]
    out["collapse_step"] = int(c) if np.isfinite(c) else None
    out["variant"] = variant
    out.update({k: run[k] for k in EXTRA_KEYS})
    return out


def run(args, progress):
    from .. import _plots as plots

    defaults = _defaults()
    _check_run(args)  # --figure: writable, an image suffix
    data = load_data(
        args.data, test_fraction=args.test_fraction, balance=args.balance, float32=args.float32
    )
    _check_batch(args, data)
    config = _config(args, defaults)
    check_size(data, config, 1)
    start = time.perf_counter()
    result = _train(data, config, args, progress, args.variant)
    out = _report(result, args.variant)
    out.update(
        lr=args.lr,
        seed=args.seed,
        data=data.name,
        n_samples=data.n_samples,
        n_test=int(data.X_test.shape[0]),
        n_classes=data.n_classes,
        dtype=str(np.dtype(data.X.dtype)),
        config=config._asdict(),
    )
    if args.figure is not None:
        other = "plain" if args.variant == "stop-gradient" else "stop-gradient"
        second = _train(data, config._replace(variant=other), args, progress, other)
        fig = plots.plot_network_run({args.variant: result, other: second})
        out["figure"] = plots.save_figure(fig, args.figure, dpi=120)
        out["comparison"] = _report(second, other)
    out["seconds"] = time.perf_counter() - start
    return out


def _rows(out, count=8):
    """A handful of record indices, spread over the steps, with the peak's."""
    T = len(out["step"])
    picks = set(np.linspace(0, T - 1, min(count, T)).round().astype(int).tolist())
    acc = np.asarray(out["accuracy"], dtype=np.float64)
    if np.any(np.isfinite(acc)):
        picks.add(int(np.nanargmax(acc)))
    return sorted(picks)


def print_human(out):
    c = out["config"]
    print(
        f"network {out['variant']} on {out['data']} ({out['n_samples']} training samples, "
        f"{out['n_classes']} classes): phi={out['frustration']:g} ({out['shared']} shared), "
        f"seed {out['seed']}, {c['optimizer']} lr={out['lr']:g}, {c['steps']} steps, "
        f"width {c['width']} x {c['depth']}, d={c['dim']}, {out['dtype']} "
        f"({out['seconds']:.2f} s)"
    )
    print("     step         loss        MinL2   accuracy  test acc.")
    for i in _rows(out):
        print(
            f"  {out['step'][i]:7d} {out['loss'][i]:12.5g} {out['min_l2'][i]:12.5g} "
            f"{out['accuracy'][i]:10.4f} {out['accuracy_test'][i]:10.4f}"
        )
    collapse = out["collapse_step"]
    fall = f"collapse at step {collapse}" if collapse is not None else "no collapse"
    print(
        f"accuracy: peak {out['peak_accuracy']:.4f} at step {out['peak_step']}, final "
        f"{out['final_accuracy']:.4f} (drop {out['accuracy_drop']:.4f}; {fall})"
    )
    print(
        f"MinL2: {out['min_l2_at_peak']:.5g} at the peak -> {out['final_min_l2']:.5g} at the "
        f"end; late decay: rate {out['slow_rate_fit']:.4g} per step, power-law exponent "
        f"{out['power_law_exponent']:.4g} (better fit: {out['better_fit']})"
    )
    if "figure" in out:
        cmp = out["comparison"]
        print(
            f"{cmp['variant']}: peak accuracy {cmp['peak_accuracy']:.4f}, final "
            f"{cmp['final_accuracy']:.4f}, final MinL2 {cmp['final_min_l2']:.5g}"
        )
        print(f"figure: {out['figure']}")


# --- sweep --model network ---------------------------------------------------------------


def add_sweep_flags(sw):
    """The network model in ``collapse-jax sweep``: ``--model network`` and its flags."""
    defaults = _defaults()
    for action in sw._actions:
        if action.dest == "model":
            action.choices = [*action.choices, "network"]
            action.help += "; network: an MLP encoder on real data (the network flags below)"
        if action.dest == "dim":  # the network's default differs from the minimal models'
            action.default = None
            action.help = (
                f"embedding dimension d (>= 1, default {DEFAULTS['dim']}; --model network: "
                f"{defaults['config'].dim})"
            )
    g = sw.add_argument_group("network model (--model network only)")
    _add_data_flag(g)
    _add_training_flags(g, defaults, sweep=True)


def check_sweep_flags(args):
    """Network flags only with ``--model network``; fills in the default ``--dim``."""
    if args.model != "network":
        given = [flag for dest, flag in SWEEP_ONLY if getattr(args, dest) is not None]
        if given:
            raise UsageError(f"{given[0]} is for --model network, got --model {args.model}")
        if args.dim is None:
            args.dim = DEFAULTS["dim"]
        return
    if args.stop_gradient:
        raise UsageError(
            "--stop-gradient is for the projection model: with --model network give "
            "--variant stop-gradient"
        )


def save_network_sweep(result, path) -> str:
    """Write a [`NetworkSweep`][collapse_jax.NetworkSweep] as ``.npz`` atomically: records as
    ``<name>`` `(F, S, L, T)`, summaries as ``summary_<name>`` `(F, S, L)`, the axes
    ``frustration``, ``seed``, ``lr``, ``step``, ``shared`` and ``metadata`` (a JSON string)."""
    from .._atomic import atomic_write

    arrays = {k: np.asarray(getattr(result, k)) for k in ("frustration", "seed", "lr", "step")}
    arrays["shared"] = np.asarray(result.shared)
    arrays.update({k: np.asarray(v) for k, v in result.records.items()})
    arrays.update({f"summary_{k}": np.asarray(v) for k, v in result.summary.items()})
    meta = json.dumps(_jsonable(result.metadata), allow_nan=False)
    with atomic_write(path, prefix=".sweep.", suffix=".npz") as f:
        np.savez(f, metadata=np.array(meta), **arrays)
    return str(path)


def sweep_summary(result) -> dict:
    """Per ratio, means over seeds (NaN-ignoring) of the first learning rate's summaries;
    ``failed_members``: trainings with a loss that is not finite at some record step."""
    from .._sweep import mean_over_seeds

    keys = (
        "peak_accuracy",
        "final_accuracy",
        "collapse_step",
        "final_min_l2",
        "slow_rate_fit",
        "power_law_exponent",
    )
    out = {k: mean_over_seeds(result.summary[k][:, :, 0]) for k in keys}
    finite = np.all(np.isfinite(result.records["loss"]), axis=-1)
    out["failed_members"] = int(np.sum(~finite))
    return out


def run_sweep(args, progress, join_cluster):
    """``collapse-jax sweep --model network``: one ``network_sweep`` over the ratios x seeds."""
    from .._network import network_sweep

    defaults = _defaults()
    writer = join_cluster(args)
    _check_out(args.out, force=args.force, writes=("sweep*.npz", "sweep.png"))
    data = load_data(args.data)
    _check_batch(args, data)
    config = _config(args, defaults, _CONFIG_FLAGS[:6])
    lr = defaults["lr"] if args.lr is None else args.lr
    members = len(args.frustration) * args.seeds
    grid = f"({len(args.frustration)} ratios x --seeds {args.seeds})"
    check_size(data, config, members, limit=args.max_memory, flags=f"sweep {grid}")
    _note(progress, f"sweeping {len(args.frustration)} ratios x {args.seeds} seeds ...")
    start = time.perf_counter()
    result = network_sweep(data, args.frustration, args.seeds, lr=lr, config=config)
    seconds = time.perf_counter() - start
    file = save_network_sweep(result, os.path.join(args.out, SWEEP_FILE)) if writer else None
    meta = result.metadata
    return {
        "file": file,
        "figure": None,
        "frustration": result.frustration,
        "shared": result.shared,
        **sweep_summary(result),
        "seconds": seconds,
        "compile_seconds": meta["compile_seconds"],
        "run_seconds": meta["run_seconds"],
        "devices": meta["devices"],
        "model": "network",
        "seeds": args.seeds,
        "variant": config.variant,
        "lr": lr,
        "data": data.name,
        "n_samples": data.n_samples,
        "config": config._asdict(),
    }


def print_sweep(out):
    print(
        f"network {out['variant']} on {out['data']}: {len(out['frustration'])} ratios x "
        f"{out['seeds']} seeds in {out['seconds']:.2f} s (compile "
        f"{out['compile_seconds']:.2f} s, run {out['run_seconds']:.3f} s) on "
        f"{len(out['devices'])} device(s); failed members: {out['failed_members']}"
    )
    print("   phi      M   peak acc  final acc  collapse step   late rate  power law")
    for row in zip(
        out["frustration"],
        out["shared"],
        out["peak_accuracy"],
        out["final_accuracy"],
        out["collapse_step"],
        out["slow_rate_fit"],
        out["power_law_exponent"],
        strict=True,
    ):
        print("  {:.3f} {:6d} {:10.4f} {:10.4f} {:14.6g} {:11.4g} {:10.4g}".format(*row))
    print("results: " + (out["file"] or "written by process 0 of the cluster"))
