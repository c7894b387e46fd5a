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
- ``bf16 out=`` and ``int8 out=``: ``stepper.step(x, out=h)`` on
  ``layer.stepper(precision="bfloat16")`` / ``"int8"`` (weights rounded / quantized per
  column, float32 arithmetic; ``--precisions`` picks them);
- ``torch``: ``h = cell(x, h)`` (``h, c = cell(x, (h, c))`` for the LSTM) with
  ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell`` under ``torch.no_grad()``, float32,
  the same weights (checked: both give the same states after the warm-up steps), on as
  many threads as crnn (``crnn.get_num_threads()``; a stepper splits its products over
  crnn's pool from ``crnn._step.SPLIT_MIN`` multiply-adds on).

The weights are random Glorot-uniform (kernel and recurrent kernel). ``GB/s`` is the
weight bytes a step reads (``(D + H) * G`` times 4, 2 or 1) over its median time: a
step at batch 1 reads every weight once and does one multiply-add per weight, so its
bound is memory bandwidth. ``err`` is the accuracy of the reduced precisions: 100 steps
from zero states over random normal inputs, the largest ``|h - h_float32|`` relative to
the largest ``|h_float32|``.

``--split`` times instead each precision's stepper on the calling thread alone and
split over the pool (where ``SPLIT_MIN`` should lie).

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
    python benchmarks/bench_step.py --split --units 64 128 256 512 --repeats 7
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import crnn
from bench_rnn import cpu_model  # benchmarks/ (this folder) is on sys.path
from crnn.layers.gru import weights_to_torch

CELLS = ("SimpleRNN", "LSTM", "GRU")
PRECISIONS = ("float32", "bfloat16", "int8")
BYTES = {"float32": 4, "bfloat16": 2, "int8": 1}
SHORT = {"bfloat16": "bf16", "int8": "int8"}


def make_pair(kind, H, seed=0):
    """A crnn layer (built for D = H) and the PyTorch cell with the same weights."""
    import torch
    D = H
    layer = getattr(crnn, kind)(H, return_sequences=True, seed=seed,
                                recurrent_initializer="glorot_uniform")
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


def runners(kind, layer, cell, x_np, precisions=PRECISIONS):
    """``{name: run(n)}``: run(n) makes n steps from the current state."""
    import torch
    H = layer.units
    x_t = torch.from_numpy(x_np.copy())
    stepper = layer.stepper(batch_size=1)
    out = np.zeros((1, H), np.float32)
    lstm = kind == "LSTM"
    state = {"torch": None, "layer": None}

    def reduced(precision):
        s = layer.stepper(batch_size=1, precision=precision)
        buf = np.zeros((1, H), np.float32)

        def run(n):
            step = s.step
            for _ in range(n):
                step(x_np, buf)
        return run

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

    runs = {"crnn": run_crnn, "crnn out=": run_crnn_out, "layer.step": run_layer}
    for p in precisions:
        if p != "float32":
            runs[f"{SHORT[p]} out="] = reduced(p)
    runs["torch"] = run_torch
    return runs


def weight_bytes(kind, H, precision):
    G = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}[kind] * H
    return 2 * H * G * BYTES[precision]          # (D + H) * G with D = H


def accuracy(layer, precisions, steps=100, seed=1):
    """Largest |h - h_float32| over ``steps`` steps from zero states, relative to the
    largest |h_float32|, per reduced precision."""
    x = np.random.default_rng(seed).standard_normal((steps, 1, layer.units)).astype(
        np.float32)
    ref = layer.stepper()
    want = np.stack([ref.step(x[t]) for t in range(steps)])
    err = {}
    for p in precisions:
        if p != "float32":
            s = layer.stepper(precision=p)
            got = np.stack([s.step(x[t]) for t in range(steps)])
            err[p] = float(np.abs(got - want).max() / np.abs(want).max())
    return err


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


def measure(runs, repeats, target_s, settle_s):
    """Median seconds per step of each run, samples interleaved."""
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
    return {name: statistics.median(v) * 1e6 for name, v in samples.items()}, steps


def bench(kind, H, repeats, target_s, settle_s=0.0, seed=0, precisions=PRECISIONS):
    layer, cell = make_pair(kind, H, seed)
    x_np = np.random.default_rng(seed).standard_normal((1, H)).astype(np.float32)
    diff = check_same(kind, layer, cell, x_np)
    runs = runners(kind, layer, cell, x_np, precisions)
    med, steps = measure(runs, repeats, target_s, settle_s)
    ratios = {"float32": med["torch"] / med["crnn out="]}
    gbs = {"float32": weight_bytes(kind, H, "float32") / med["crnn out="] / 1e3}
    for p in precisions:
        if p != "float32":
            ratios[p] = med["torch"] / med[f"{SHORT[p]} out="]
            gbs[p] = weight_bytes(kind, H, p) / med[f"{SHORT[p]} out="] / 1e3
    gbs["torch"] = weight_bytes(kind, H, "float32") / med["torch"] / 1e3
    return {"cell": kind, "H": H, "D": H, "median_us": med,
            "ratio_torch_over_crnn": med["torch"] / med["crnn"],
            "ratio_torch_over_precision": ratios, "GB_per_s": gbs,
            "threads": layer.stepper().threads,
            "max_rel_err": accuracy(layer, precisions), "max_abs_diff": diff,
            "steps_per_sample": steps}


def bench_split(kind, H, repeats, target_s, settle_s, precisions, seed=0):
    """Each precision's stepper on one thread and split over the pool (us)."""
    from crnn import _step
    layer, _ = make_pair(kind, H, seed)
    x = np.random.default_rng(seed).standard_normal((1, H)).astype(np.float32)
    runs = {}
    for p in precisions:
        for label, split_min in (("1", 1 << 62), ("pool", 0)):
            old = _step._set_split_min(split_min)
            try:
                s = layer.stepper(precision=p)
            finally:
                _step._set_split_min(old)
            buf = np.zeros((1, H), np.float32)

            def run(n, step=s.step, buf=buf):
                for _ in range(n):
                    step(x, buf)
            runs[f"{SHORT.get(p, p)} {label}"] = run
    return measure(runs, repeats, target_s, settle_s)[0]


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
            "crnn_threads": crnn.get_num_threads(), "cpu": cpu_model(),
            "blas": [{k: i.get(k) for k in ("internal_api", "version", "num_threads",
                                            "architecture")}
                     for i in threadpool_info()],
            "numpy": np.__version__}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS),
                   choices=PRECISIONS)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--sample-ms", type=float, default=20.0,
                   help="about how long one sample (many steps) runs")
    p.add_argument("--settle-ms", type=float, default=50.0,
                   help="sleep before each sample, so that PyTorch's OpenMP threads (and "
                        "any BLAS pool) stop spinning before the other side runs")
    p.add_argument("--split", action="store_true",
                   help="time each precision on one thread and split over the pool")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    import torch
    torch.set_grad_enabled(False)
    torch.set_num_threads(crnn.get_num_threads())
    env = environment()
    print(f"{env['cpu']}; load {env['loadavg']}, {env['cpu_count']} CPUs; torch "
          f"{env['torch']} with {env['torch_threads']} threads, crnn "
          f"{env['crnn_threads']} threads; crnn BLAS {env['blas']}")
    if args.split:
        print("\nper-step latency, batch 1, D = H, one thread / split over crnn's pool; "
              f"median of {args.repeats} interleaved samples (us)")
        for kind in args.cells:
            for H in args.units:
                m = bench_split(kind, H, args.repeats, args.sample_ms / 1e3,
                                args.settle_ms / 1e3, args.precisions)
                print(f"{kind:<10} {H:>5} " + "  ".join(f"{k} {v:.2f}"
                                                       for k, v in m.items()), flush=True)
        return None
    over = fixed_overhead()
    print(f"crnn fixed cost per step (SimpleRNN, H = D = 8, batch 1): "
          + ", ".join(f"{k} {v:.2f} us" for k, v in over.items()))
    reduced = [q for q in args.precisions if q != "float32"]
    print("\nper-step latency, batch 1, D = H; median of "
          f"{args.repeats} interleaved samples (us); torch/x: PyTorch's float32 cell's "
          f"time over x's (above 1: crnn is faster); GB/s: weight bytes read per second")
    head = (f"{'cell':<10} {'H':>5} {'thr':>3} {'crnn':>9} {'crnn out=':>10} "
            f"{'layer.step':>11} " + "".join(f"{SHORT[q] + ' out=':>10} " for q in reduced)
            + f"{'torch':>9} {'torch/out=':>11} {'torch/step':>11} "
            + "".join(f"{'torch/' + SHORT[q]:>10} " for q in reduced)
            + "  GB/s f32" + "".join(f"/{SHORT[q]}" for q in reduced) + "/torch"
            + "".join(f"  err {SHORT[q]}" for q in reduced))
    print(head)
    print("-" * len(head))
    results = []
    for kind in args.cells:
        for H in args.units:
            r = bench(kind, H, args.repeats, args.sample_ms / 1e3, args.settle_ms / 1e3,
                      precisions=args.precisions)
            m, ratio, gbs = r["median_us"], r["ratio_torch_over_precision"], r["GB_per_s"]
            print(f"{kind:<10} {H:>5} {r['threads']:>3} {m['crnn']:>9.2f} "
                  f"{m['crnn out=']:>10.2f} {m['layer.step']:>11.2f} "
                  + "".join(f"{m[SHORT[q] + ' out=']:>10.2f} " for q in reduced)
                  + f"{m['torch']:>9.2f} {ratio['float32']:>10.2f}x "
                  f"{m['torch'] / m['layer.step']:>10.2f}x "
                  + "".join(f"{ratio[q]:>9.2f}x " for q in reduced)
                  + "  " + "/".join(f"{gbs[q]:.1f}" for q in [*args.precisions, "torch"])
                  + "".join(f"  {r['max_rel_err'][q]:.1e}" for q in reduced), flush=True)
            results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "fixed_overhead_us": over,
                       "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
