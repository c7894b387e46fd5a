"""Benchmark streaming inference: the latency of one step for a batch of one, crnn against
PyTorch's cells.

What is measured
----------------
For each cell type (SimpleRNN, LSTM, GRU with ``reset_after=True``) and each ``H`` in
``--units`` (input size ``D = H``), float32, batch 1, one step of:

- ``crnn``: ``h = stepper.step(x)``, the stepper from ``layer.stepper()`` (the state kept
  inside; a new output array per step);
- ``crnn out=``: ``stepper.step(x, out=h)``, which allocates nothing;
- ``layer.step``: ``h, states = layer.step(x, states)``, the stateless Keras-cell-style
  call (states in, new arrays out);
- ``torch``: ``h = cell(x, h)`` (``h, c = cell(x, (h, c))`` for the LSTM) with
  ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell`` under ``torch.no_grad()``, the same
  weights (checked: both give the same states after the warm-up steps).

The input ``x (1, D)`` is preallocated and the state fed back, for both. One sample is
about ``--sample-ms`` of consecutive steps (timed with ``perf_counter``, divided by the
count), preceded by ``--settle-ms`` of sleep and one untimed step (PyTorch's OpenMP
threads spin for a while after each call, and would otherwise steal the cores of the
next sample); the implementations alternate sample by sample, the first one rotating each
repeat, and the
table shows the MEDIAN over ``--repeats`` samples and the ratio of PyTorch's median to
crnn's (above 1: crnn is faster). The machine may be shared: trust the ratios more than
the times; ``/proc/loadavg`` and the thread counts (threadpoolctl for crnn's BLAS,
``torch.get_num_threads()``) are printed first.

Usage::

    python benchmarks/bench_step.py
    python benchmarks/bench_step.py --units 64 256 --repeats 31
    python benchmarks/bench_step.py --json benchmarks/results/bench_step.json
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import crnn
from crnn.layers.gru import weights_to_torch

CELLS = ("SimpleRNN", "LSTM", "GRU")


def make_pair(kind, H, seed=0):
    """A crnn layer (built for D = H) and the PyTorch cell with the same weights."""
    import torch
    D = H
    layer = getattr(crnn, kind)(H, return_sequences=True, seed=seed)
    layer.build((1, None, D))
    W_x, W_h, b = layer.get_weights()
    if kind == "GRU":
        w_ih, w_hh, b_ih, b_hh = weights_to_torch([W_x, W_h, b])
    else:
        w_ih, w_hh, b_ih, b_hh = W_x.T, W_h.T, b, np.zeros_like(b)
    cls = {"SimpleRNN": torch.nn.RNNCell, "LSTM": torch.nn.LSTMCell,
           "GRU": torch.nn.GRUCell}[kind]
    cell = cls(D, H)
    with torch.no_grad():
        for name, w in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih),
                        ("bias_hh", b_hh)):
            getattr(cell, name).copy_(torch.from_numpy(np.ascontiguousarray(w)))
    return layer, cell


def runners(kind, layer, cell, x_np):
    """``{name: (setup, run(n))}``: run(n) makes n steps from the current state."""
    import torch
    H = layer.units
    x_t = torch.from_numpy(x_np.copy())
    stepper = layer.stepper(batch_size=1)
    out = np.zeros((1, H), np.float32)
    lstm = kind == "LSTM"
    state = {"torch": None, "layer": None}

    def run_crnn(n):
        step = stepper.step
        for _ in range(n):
            step(x_np)

    def run_crnn_out(n):
        step = stepper.step
        for _ in range(n):
            step(x_np, out)

    def run_layer(n):
        s = state["layer"]
        step = layer.step
        for _ in range(n):
            _, s = step(x_np, s)
        state["layer"] = s

    def run_torch(n):
        h = state["torch"]
        with torch.no_grad():
            if h is None:
                h = ((torch.zeros(1, H), torch.zeros(1, H)) if lstm
                     else torch.zeros(1, H))
            for _ in range(n):
                h = cell(x_t, h)
        state["torch"] = h

    return {"crnn": run_crnn, "crnn out=": run_crnn_out, "layer.step": run_layer,
            "torch": run_torch}


def check_same(kind, layer, cell, x_np, steps=5):
    """Both implementations from zero states give the same h after a few steps."""
    import torch
    s = layer.stepper()
    H = layer.units
    h_t = (torch.zeros(1, H), torch.zeros(1, H)) if kind == "LSTM" else torch.zeros(1, H)
    with torch.no_grad():
        for _ in range(steps):
            h = s.step(x_np)
            h_t = cell(torch.from_numpy(x_np), h_t)
    ht = (h_t[0] if kind == "LSTM" else h_t).numpy()
    err = float(np.max(np.abs(h - ht)))
    if err > 1e-4:
        raise AssertionError(f"{kind} H={H}: crnn and torch differ by {err:.2e}")
    return err


def calibrate(run, target_s):
    """Steps per sample so that one sample takes about target_s."""
    n = 1
    while True:
        t0 = time.perf_counter()
        run(n)
        dt = time.perf_counter() - t0
        if dt > target_s / 4 or n >= 1 << 20:
            return max(1, int(n * target_s / max(dt, 1e-9)))
        n *= 4


def bench(kind, H, repeats, target_s, settle_s=0.0, seed=0):
    layer, cell = make_pair(kind, H, seed)
    x_np = np.random.default_rng(seed).standard_normal((1, H)).astype(np.float32)
    err = check_same(kind, layer, cell, x_np)
    runs = runners(kind, layer, cell, x_np)
    names = list(runs)
    steps = {name: calibrate(runs[name], target_s) for name in names}
    samples = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            n = steps[name]
            if settle_s:
                time.sleep(settle_s)     # let the other side's idle threads stop spinning
                runs[name](1)
            t0 = time.perf_counter()
            runs[name](n)
            samples[name].append((time.perf_counter() - t0) / n)
    med = {name: statistics.median(v) * 1e6 for name, v in samples.items()}
    return {"cell": kind, "H": H, "D": H, "median_us": med,
            "ratio_torch_over_crnn": med["torch"] / med["crnn"], "max_abs_diff": err,
            "steps_per_sample": steps}


def fixed_overhead(repeats=15, n=20000):
    """The median time of one crnn SimpleRNN step at H = D = 8: the fixed cost."""
    layer = crnn.SimpleRNN(8, seed=0)
    layer.build((1, None, 8))
    s = layer.stepper()
    x = np.zeros((1, 8), np.float32)
    out = np.zeros((1, 8), np.float32)
    res = {}
    for name, f in (("step(x)", lambda: s.step(x)), ("step(x, out)", lambda: s.step(x, out))):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            ts.append((time.perf_counter() - t0) / n)
        res[name] = statistics.median(ts) * 1e6
    return res


def environment():
    import torch
    from threadpoolctl import threadpool_info
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = None
    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "loadavg": load, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "blas": [{k: i.get(k) for k in ("internal_api", "version", "num_threads",
                                            "architecture")}
                     for i in threadpool_info()],
            "numpy": np.__version__}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--sample-ms", type=float, default=20.0,
                   help="about how long one sample (many steps) runs")
    p.add_argument("--settle-ms", type=float, default=50.0,
                   help="sleep before each sample, so that PyTorch's OpenMP threads (and "
                        "any BLAS pool) stop spinning before the other side runs")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    import torch
    torch.set_grad_enabled(False)
    env = environment()
    print(f"load {env['loadavg']}, {env['cpu_count']} CPUs; torch {env['torch']} with "
          f"{env['torch_threads']} threads; crnn BLAS {env['blas']}")
    over = fixed_overhead()
    print(f"crnn fixed cost per step (SimpleRNN, H = D = 8, batch 1): "
          + ", ".join(f"{k} {v:.2f} us" for k, v in over.items()))
    print("\nper-step latency, batch 1, float32, D = H; median of "
          f"{args.repeats} interleaved samples (us)")
    head = (f"{'cell':<10} {'H':>5} {'crnn':>9} {'crnn out=':>10} {'layer.step':>11} "
            f"{'torch':>9} {'torch/crnn':>11}")
    print(head)
    print("-" * len(head))
    results = []
    for kind in args.cells:
        for H in args.units:
            r = bench(kind, H, args.repeats, args.sample_ms / 1e3, args.settle_ms / 1e3)
            m = r["median_us"]
            print(f"{kind:<10} {H:>5} {m['crnn']:>9.2f} {m['crnn out=']:>10.2f} "
                  f"{m['layer.step']:>11.2f} {m['torch']:>9.2f} "
                  f"{r['ratio_torch_over_crnn']:>10.2f}x", flush=True)
            results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "fixed_overhead_us": over,
                       "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
