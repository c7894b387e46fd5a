"""Vanishing gradients, measured: SimpleRNN, LSTM and GRU on the adding problem.

Task
    The adding problem (Hochreiter & Schmidhuber, 1997): each step has two channels, a
    value drawn uniformly from [0, 1] and a marker that is 1 at exactly two steps (one in
    each half of the sequence) and 0 elsewhere; the target is the sum of the two marked
    values. Predicting the mean, 1, gives MSE 1/6 = 0.167; the task is solved when the
    held-out MSE is well under that (here: under 0.05). The first marker can be up to
    ``T`` steps before the output, so the gradient must travel that far back.
Model
    Many-to-one: ``Input (T, 2) -> SimpleRNN | LSTM | GRU (units) -> Dense(1)``, MSE,
    Adam (learning rate 0.01, ``clipnorm=1``), one run per cell type and sequence length
    ``T`` (10, 50, 100 in the quick form; 10, 50, 100, 200 and longer training with
    ``--full``).
Reports
    For every cell and ``T``: the held-out MSE and whether it solved the task, and the
    gradient flow ``||dL/dh_t||`` at every step ``t`` (:func:`crnn.diagnostics.gradient_flow`,
    the total gradient that backpropagation through time carries back to step ``t``),
    at initialisation and after training, plotted on a log scale relative to the last
    step. At initialisation all three forget fast (the LSTM's forget gate starts near
    sigmoid(1) = 0.73, the GRU's update gate near 0.5); training teaches the gated cells
    to hold their state open, and their curves go flat, while the plain RNN's gradient
    still dies within a few dozen steps: it cannot learn what it cannot reach.
"""
import time

import numpy as np

import crnn
from crnn.diagnostics import gradient_flow
from crnn.examples import Result, _plots

NAME = "gradients"
TITLE = "vanishing gradients: the adding problem (many-to-one)"

CELLS = ("SimpleRNN", "LSTM", "GRU")
SOLVED_MSE = 0.05
BASELINE_MSE = 1.0 / 6.0   # predicting 1 = E[sum]: the variance of the sum, 2/12


def adding_problem(n, T, rng):
    """``x (n, T, 2)`` float32 (values, markers) and ``y (n, 1)``, the sum of the two
    marked values; one marker in each half of the sequence."""
    x = np.zeros((n, T, 2), dtype="float32")
    x[:, :, 0] = rng.uniform(0.0, 1.0, size=(n, T))
    rows = np.arange(n)
    first = rng.integers(0, max(T // 2, 1), size=n)
    second = rng.integers(T // 2, T, size=n)
    x[rows, first, 1] = 1.0
    x[rows, second, 1] = 1.0
    y = (x[rows, first, 0] + x[rows, second, 0])[:, None]
    return x, y.astype("float32")


def build(cell, T, units, seed):
    model = crnn.Sequential([crnn.Input(shape=(T, 2)),
                             getattr(crnn, cell)(units, seed=seed, name=cell.lower()),
                             crnn.Dense(1, seed=seed + 1)])
    model.compile(optimizer=crnn.optimizers.Adam(learning_rate=0.01, clipnorm=1.0),
                  loss="mse")
    return model


def run(out_dir, quick=True, seed=0, verbose=1, tiny=False, lengths=None, cells=CELLS,
        n_train=None, epochs=None, units=32):
    """Train every cell at every length; plot the gradient flow; see the module docstring.

    ``tiny=True`` is a seconds-long smoke test; ``lengths``, ``cells``, ``n_train``,
    ``epochs`` and ``units`` override the form's settings.
    """
    start = time.perf_counter()
    if tiny:
        form = dict(lengths=(5, 12), n_train=256, epochs=3, units=8)
    elif quick:
        form = dict(lengths=(10, 50, 100), n_train=6000, epochs=12, units=units)
    else:
        form = dict(lengths=(10, 50, 100, 200), n_train=10000, epochs=20, units=units)
    lengths = tuple(lengths or form["lengths"])
    n_train = n_train or form["n_train"]
    epochs = epochs or form["epochs"]
    units = form["units"] if tiny else units
    rng = np.random.default_rng(seed)
    rows, flows, histories = [], {}, {}
    for T in lengths:
        x, y = adding_problem(n_train, T, rng)
        x_val, y_val = adding_problem(1000, T, rng)
        probe = (x_val[:256], y_val[:256])        # one batch for the gradient flow
        for cell in cells:
            if verbose:
                print(f"{cell}, T = {T}: {n_train} sequences x {epochs} epochs")
            model = build(cell, T, units, seed)
            flow0 = gradient_flow(model, *probe)
            hist = model.fit(x, y, batch_size=64, epochs=epochs, verbose=verbose,
                             validation_data=(x_val, y_val), seed=seed).history
            flow1 = gradient_flow(model, *probe)
            mse = hist["val_loss"][-1]
            flows[cell, T] = (flow0 / flow0[-1], flow1 / flow1[-1], mse)
            rows.append({"cell": cell, "T": T, "held-out MSE": float(f"{mse:.3g}"),
                         "solved": bool(mse < SOLVED_MSE),
                         "first loss": round(hist["loss"][0], 4),
                         "last loss": round(hist["loss"][-1], 4),
                         "grad h_0/h_T init": float(f"{flows[cell, T][0][0]:.3g}"),
                         "grad h_0/h_T trained": float(f"{flows[cell, T][1][0]:.3g}")})
            if T == lengths[-1]:
                histories[cell] = hist
    plots = [plot_flows(flows, cells, lengths, out_dir),
             _plots.plot_histories(histories, out_dir, "gradients_training.png",
                                   f"adding problem, T = {lengths[-1]}\n"
                                   f"(MSE of always 1: {BASELINE_MSE:.3f})")]
    longest = [r for r in rows if r["T"] == lengths[-1]]
    best = min(longest, key=lambda r: r["held-out MSE"])
    return Result(name=NAME, metric=f"held-out MSE at T = {lengths[-1]}, best cell "
                                    f"({best['cell']})",
                  value=best["held-out MSE"], baseline=f"always 1: {BASELINE_MSE:.3f}",
                  rows=rows, plots=plots, seconds=time.perf_counter() - start)


def plot_flows(flows, cells, lengths, out_dir):
    """One column per T; top row at initialisation, bottom row after training."""
    plt = _plots.pyplot()
    fig, axes = plt.subplots(2, len(lengths), figsize=(3.6 * len(lengths) + 0.6, 6.2),
                             squeeze=False)
    for col, T in enumerate(lengths):
        for row, when in enumerate(("at initialisation", "after training")):
            ax = axes[row][col]
            for cell in cells:
                norms = np.maximum(flows[cell, T][row], 1e-30)   # log scale: no zeros
                label = cell if row == 0 else f"{cell}: MSE {flows[cell, T][2]:.2g}"
                ax.semilogy(np.arange(T), norms, label=label)
            ax.set_title(f"T = {T}, {when}", fontsize=10)
            ax.set_xlabel("step t (the output reads h at t = T - 1)")
            ax.set_ylabel(r"$\|\partial L/\partial h_t\| \;/\; "
                          r"\|\partial L/\partial h_{T-1}\|$")
            ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-12))
            ax.grid(alpha=0.3, which="major")
    axes[0][0].legend(fontsize=8)
    for ax in axes[1]:
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("gradient reaching step t of the adding problem (log scale); "
                 "held-out MSE of always 1: 0.167")
    return _plots.save(fig, out_dir, "gradients_flow.png")
