"""Network trainings: a `phi x seed` study in one ``jit(vmap)`` vs a Python loop of jitted steps.

Problem: the plain network row (default architecture: one tanh hidden layer of 128 units,
`d = 16`) on scikit-learn's digits (``digits_data()``: 1437 training samples of 64 inputs,
10 classes), SGD full batch at the default learning rate, `phi` in {0, 0.01, 0.02, 0.04} x 4
seeds = 16 trainings of ``--steps`` updates, every metric of ``RECORDED`` at the default
record steps; float64 and float32 rows. Three ways:

1. ``network_sweep``: the 16 trainings in one ``jit(vmap)`` (a ``lax.scan`` over steps);
2. by hand: equinox/optax with a jitted ``step(params, opt_state, X, A)`` called ``steps``
   times per member in a Python loop, recording the same metrics (the package's
   ``network_metrics``, jitted) at the same steps, from the same start (``network_start``) and
   the same shared samples (``with_frustration``); its final loss, accuracy and MinL2 are
   checked against (1);
3. PyTorch, when it is installed (not a dependency): the same network, loss and start (the
   JAX start copied in; PyTorch's ``nn.Linear`` draws from the same `±1/sqrt(fan_in)` scheme),
   ``torch.optim.SGD``, the same steps, recording through the same jitted metrics, with
   ``torch.set_num_threads(os.cpu_count())``; recorded as skipped with the reason otherwise.

Compile (or warm-up) time is reported apart from run time; ratios are per member-step from the
same run. Writes ``benchmarks/results/network.json``.

    .venv/bin/python benchmarks/bench_network.py [--steps 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

from _record import save_record  # noqa: E402

import collapse_jax as cj  # noqa: E402

PHIS = (0.0, 0.01, 0.02, 0.04)
SEEDS = 4
LR = cj.DEFAULT_LR
CHECKED = ("loss", "accuracy", "min_l2")


def hand_loss(params, X, A):
    """Mean over samples of 1/2 sum_c A_ic |f(xi_i) - y_c|^2 (encoder and labels trained)."""
    enc, y = params
    f = enc(X)
    sq = jnp.sum((f[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    return 0.5 * jnp.sum(A * sq) / X.shape[0]


def members(data, config):
    """(phi, seed, data with its shared samples, alignment, start) of every training."""
    for phi in PHIS:
        for seed in range(SEEDS):
            key = jax.random.PRNGKey(seed)
            d = cj.with_frustration(data, jax.random.fold_in(key, 1), phi)
            onehot = jax.nn.one_hot(d.labels, d.n_classes, dtype=d.X.dtype)
            A = jnp.where(d.shared[:, None], 1.0, onehot).astype(d.X.dtype)
            z0 = cj.network_start("plain", key, d, config.dim)
            yield phi, seed, d, A, z0


def make_record():
    """The package's metrics of a (encoder, labels) pair, jitted (one compile for all)."""
    row = cj.network_row("plain")

    @jax.jit
    def record(z, d):
        return row.metrics(row, z, d, row.data_args(d, None))

    return record


def by_hand(data, config, save):
    """(2): a jitted SGD step in a Python loop, member after member."""
    opt = optax.sgd(LR)
    record = make_record()

    @jax.jit
    def step(params, opt_state, X, A):
        grads = jax.grad(hand_loss)(params, X, A)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    todo = list(members(data, config))
    _, _, d, A, z0 = todo[0]
    start = time.perf_counter()  # compile the step and the metrics once (shapes are shared)
    jax.block_until_ready(step((z0.x, z0.y), opt.init((z0.x, z0.y)), d.X, A))
    jax.block_until_ready(record(z0, d))
    compile_seconds = time.perf_counter() - start
    saves, finals = set(save.tolist()), {k: [] for k in CHECKED}
    start = time.perf_counter()
    for _, _, d, A, z0 in todo:
        params = (z0.x, z0.y)
        opt_state = opt.init(params)
        recs = []
        for s in range(config.steps + 1):
            if s in saves:
                recs.append(record(z0._replace(x=params[0], y=params[1]), d))
            if s < config.steps:
                params, opt_state = step(params, opt_state, d.X, A)
        last = jax.device_get(recs[-1])
        for k in CHECKED:
            finals[k].append(float(last[k]))
    run_seconds = time.perf_counter() - start
    return compile_seconds, run_seconds, {k: np.array(v) for k, v in finals.items()}


def with_torch(data, config, save, dtype):
    """(3): the same trainings in PyTorch (parameters handed to the jitted metrics)."""
    import torch

    torch.set_num_threads(os.cpu_count())
    tdt = torch.float64 if dtype == jnp.float64 else torch.float32
    record = make_record()

    def get(t):
        # a copy: opt.step() updates the tensor in place while JAX, dispatching
        # asynchronously, may still read a buffer aliased to it
        return jnp.asarray(t.detach().numpy().copy())

    def tensors(z0):
        ws = [torch.tensor(np.asarray(w), dtype=tdt, requires_grad=True) for w in z0.x.weights]
        bs = [torch.tensor(np.asarray(b), dtype=tdt, requires_grad=True) for b in z0.x.biases]
        return ws, bs, torch.tensor(np.asarray(z0.y), dtype=tdt, requires_grad=True)

    def forward(ws, bs, X):
        h = X
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = torch.nn.functional.linear(h, w, b)
            if i < len(ws) - 1:
                h = torch.tanh(h)
        return h

    def loss_fn(ws, bs, y, X, A):
        f = forward(ws, bs, X)
        sq = ((f[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return 0.5 * (A * sq).sum() / X.shape[0]

    def train(z0, d, A, steps, keep):
        ws, bs, y = tensors(z0)
        X = torch.tensor(np.asarray(d.X), dtype=tdt)
        At = torch.tensor(np.asarray(A), dtype=tdt)
        opt = torch.optim.SGD([*ws, *bs, y], lr=LR)
        last = None
        for s in range(steps + 1):
            if s in keep:
                enc = cj.Encoder(
                    tuple(get(w) for w in ws), tuple(get(b) for b in bs), z0.x.activation
                )
                last = record(z0._replace(x=enc, y=get(y)), d)
            if s < steps:
                opt.zero_grad(set_to_none=True)
                loss_fn(ws, bs, y, X, At).backward()
                opt.step()
        return jax.device_get(last)

    todo = list(members(data, config))
    _, _, d, A, z0 = todo[0]
    start = time.perf_counter()  # warm-up: the metrics' compile and a few PyTorch steps
    train(z0, d, A, 3, {3})
    warmup_seconds = time.perf_counter() - start
    saves, finals = set(save.tolist()), {k: [] for k in CHECKED}
    start = time.perf_counter()
    for _, _, d, A, z0 in todo:
        last = train(z0, d, A, config.steps, saves)
        for k in CHECKED:
            finals[k].append(float(last[k]))
    run_seconds = time.perf_counter() - start
    return warmup_seconds, run_seconds, {k: np.array(v) for k, v in finals.items()}


def rel_diff(a, b):
    """Max of |a - b| / |b| over members (|a - b| where b = 0): overall and per ratio."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.where(b != 0, np.abs(b), 1.0)
    r = (np.abs(a - b) / scale).reshape(len(PHIS), SEEDS)
    return {"max": float(r.max()), "by_phi": r.max(axis=1).tolist()}


def differences(a, b):
    """rel_diff of every checked quantity, and a printable line."""
    diff = {k: rel_diff(a[k], b[k]) for k in CHECKED}
    by_phi = "/".join(f"{v:.0e}" for v in diff["loss"]["by_phi"])
    line = ", ".join(f"{k} {v['max']:.1e}" for k, v in diff.items())
    return diff, f"{line} (loss by phi {by_phi})"


def run_dtype(dtype, steps, torch_reason):
    name = jnp.dtype(dtype).name
    data = cj.digits_data(dtype=dtype)
    config = cj.NetworkConfig(steps=steps)
    save = cj.network_steps(steps, config.points, config.late)
    n = len(PHIS) * SEEDS
    sweep = cj.network_sweep(data, PHIS, SEEDS, lr=LR, config=config)
    vm = {k: sweep.records[k][:, :, 0, -1].ravel() for k in CHECKED}
    row = {
        "vmap": {
            "compile_seconds": sweep.metadata["compile_seconds"],
            "run_seconds": sweep.metadata["run_seconds"],
            "seconds_per_member_step": sweep.metadata["run_seconds"] / (n * steps),
        },
        "final_mean": {k: float(np.nanmean(v)) for k, v in vm.items()},
    }
    per1 = row["vmap"]["seconds_per_member_step"]
    print(
        f"[{name}] (1) network_sweep, one jit(vmap) of {n}: compile "
        f"{row['vmap']['compile_seconds']:.1f} s, run {row['vmap']['run_seconds']:.1f} s "
        f"= {per1 * 1e6:.0f} us/member-step"
    )
    sides = [("loop", by_hand)]
    if torch_reason is None:
        sides.append(("torch", lambda d, c, s: with_torch(d, c, s, dtype)))
    else:
        row["torch"] = {"skipped": torch_reason}
    for key, fn in sides:
        comp, run, fin = fn(data, config, save)
        per = run / (n * steps)
        diff, line = differences(fin, vm)
        row[key] = {
            "compile_seconds" if key == "loop" else "warmup_seconds": comp,
            "run_seconds": run,
            "seconds_per_member_step": per,
            "ratio_vs_vmap": per / per1,
            "max_rel_diff_final": diff,
        }
        label = "(2) jitted step in a Python loop" if key == "loop" else "(3) PyTorch"
        print(
            f"[{name}] {label}: compile/warm-up {comp:.1f} s, run {run:.1f} s = "
            f"{per * 1e6:.0f} us/member-step, {per / per1:.2f}x (1); max rel diff of final "
            f"values from (1): {line}"
        )
    if torch_reason is not None:
        print(f"[{name}] (3) PyTorch skipped: {torch_reason}")
    return row, vm


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "network.json")
    )
    a = p.parse_args()
    torch_reason = None if importlib.util.find_spec("torch") else "torch is not installed"
    rows, finals = {}, {}
    for t in (jnp.float64, jnp.float32):
        rows[jnp.dtype(t).name], finals[t] = run_dtype(t, a.steps, torch_reason)
    # the scale of the trajectories' own sensitivity to rounding: (1) in float32 vs float64
    diff, line = differences(finals[jnp.float32], finals[jnp.float64])
    rows["float32"]["vmap_vs_float64_max_rel_diff_final"] = diff
    print(f"[float32] (1) against (1) in float64, max rel diff of final values: {line}")
    out = {
        "problem": {
            "data": "digits (scikit-learn), 1437 training samples x 64 inputs, 10 classes",
            "variant": "plain",
            "frustration": list(PHIS),
            "seeds": SEEDS,
            "members": len(PHIS) * SEEDS,
            "steps": a.steps,
            "lr": LR,
            "optimizer": "sgd, full batch",
            "config": cj.NetworkConfig(steps=a.steps)._asdict(),
            "record_steps": int(cj.network_steps(a.steps).size),
        },
        "torch_version": None if torch_reason else importlib.import_module("torch").__version__,
        "rows": rows,
    }
    save_record(out, a.out)
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
