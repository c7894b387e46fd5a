"""Plotting for the examples: matplotlib (the ``examples`` extra), imported only here and
only when a plot is drawn, on the Agg backend so no screen is needed."""
import os

from crnn.examples import ExampleError


def pyplot():
    """matplotlib.pyplot on the Agg backend, or ExampleError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ExampleError('matplotlib is needed for the plots: pip install ".[examples]"') \
            from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, out_dir, filename):
    """Write ``fig`` to ``out_dir/filename`` (PNG), close it and return the path."""
    plt = pyplot()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), filename)
    if not fig.get_constrained_layout():
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_histories(histories, out_dir, filename, title):
    """Training curves: one panel per quantity (loss, then each metric), train solid and
    validation dashed, one colour per run.

    Parameters
    ----------
    histories : dict of str to dict of str to list of float
        Run label (``"LSTM"``) to ``History.history``.
    """
    plt = pyplot()
    keys = []
    for hist in histories.values():
        for k in hist:
            base = k[4:] if k.startswith("val_") else k
            if base not in keys:
                keys.append(base)
    # constrained layout leaves room for the suptitle, which tight_layout ignores
    fig, axes = plt.subplots(1, len(keys), figsize=(max(5.5, 4.2 * len(keys)), 3.6),
                             squeeze=False, constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes[0], keys):
        for i, (label, hist) in enumerate(histories.items()):
            c = colors[i % len(colors)]
            if key in hist:
                ax.plot(range(1, len(hist[key]) + 1), hist[key], color=c, label=f"{label} train")
            if "val_" + key in hist:
                ax.plot(range(1, len(hist["val_" + key]) + 1), hist["val_" + key], color=c,
                        linestyle="--", label=f"{label} validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, out_dir, filename)
