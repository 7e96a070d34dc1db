"""The figure of the network model: accuracy, loss and label MinL2 against the training step."""

from __future__ import annotations

import numpy as np

from ._base import _label_panels, new_figure, save_figure

#: x-axis label of every plot against the optimiser step
STEP_LABEL = "training step (optimiser updates)"


def plot_network_run(runs: dict, path=None):
    """Network trainings side by side: the paper's opening figure for a trained encoder.

    ``runs`` maps a label (e.g. the variant, ``"plain"`` and ``"stop-gradient"``) to a dict as
    returned by [`network_run`][collapse_jax.network_run]; runs from the same seed start from
    the same encoder and labels. Panels, one curve per run in each, labelled with its label:
    (a) nearest-label accuracy on the clean training samples (solid) and on the test samples
    (dashed, labelled ``"<label> (test)"``) against the step, log step axis; (b) the training
    loss against the step, log-log (a symmetric-log loss axis when some loss is not positive,
    as for contrastive losses); (c) MinL2 of the label embeddings against the step, log-log.
    The peak of the training accuracy is marked on (a) and (c). The curves are the runs'
    ``step``, ``accuracy``, ``accuracy_test``, ``loss`` and ``min_l2`` arrays as given (step 0
    and values that are not positive are not drawn on a log axis, but stay in the data).

    Returns the ``matplotlib.figure.Figure``; with ``path`` it is also written there
    ([`save_figure`][collapse_jax.save_figure]).
    """
    if not runs:
        raise ValueError("runs must hold at least one run")
    fig, axes = new_figure(1, 3, figsize=(16, 4.6))
    positive_loss = True
    for k, (label, run) in enumerate(runs.items()):
        color = f"C{k % 10}"
        name = str(label)
        step = np.asarray(run["step"], dtype=np.float64)
        acc = np.asarray(run["accuracy"], dtype=np.float64)
        acc_test = np.asarray(run["accuracy_test"], dtype=np.float64)
        loss = np.asarray(run["loss"], dtype=np.float64)
        m = np.asarray(run["min_l2"], dtype=np.float64)
        axes[0].plot(step, acc, "-", color=color, label=name)
        axes[0].plot(step, acc_test, "--", color=color, label=f"{name} (test)")
        axes[1].plot(step, loss, "-", color=color, label=name)
        axes[2].plot(step, m, "-", color=color, label=name)
        finite = loss[np.isfinite(loss)]
        positive_loss &= bool(np.all(finite > 0))
        if np.any(np.isfinite(acc)):
            i = int(np.nanargmax(acc))
            axes[0].plot([step[i]], [acc[i]], "o", color=color, ms=4)
            axes[2].plot([step[i]], [m[i]], "o", color=color, ms=4)
    for ax in axes:
        ax.set_xscale("log")
    axes[1].set_yscale("log" if positive_loss else "symlog")
    axes[2].set_yscale("log")
    axes[0].set_ylim(-0.02, 1.02)
    _label_panels(
        axes,
        [
            (
                "nearest-label accuracy",
                "(a) accuracy: clean training samples (solid), test (dashed)",
            ),
            ("training loss", "(b) training loss"),
            (r"MinL2 of the label embeddings $\min_{a\neq b}|y_a - y_b|$", "(c) label separation"),
        ],
        xlabel=STEP_LABEL,
        legend_fontsize=7,
    )
    first = next(iter(runs.values()))
    fig.suptitle(
        rf"network model, $\varphi$ = {first['frustration']:g} ({first['shared']} shared "
        "training samples); dots: peak training accuracy"
    )
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=120)
    return fig
