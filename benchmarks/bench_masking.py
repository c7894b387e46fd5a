"""Benchmark the mask of real steps (issue #5): what a full batch costs with ``mask=None``
before and after masks reached the kernels, and what a masked batch costs.

What is measured
----------------
The compiled kernels themselves (``crnn._simple_rnn``, ``crnn._lstm``, ``crnn._gru``:
``<cell>_forward`` and ``<cell>_forward`` then ``<cell>_backward`` with a random gradient
on every state), float32, default activations (GRU: ``reset_after=True``), at one shape
``(B, T, D, H)`` (default ``(64, 100, 128, 256)``), in these variants:

- ``before``: the kernels of another build given by ``--baseline`` (a directory holding a
  built ``crnn`` package, e.g. the last commit's tree built in place), ``mask=None``
  (they have no mask); loaded from their files under their own names, beside this
  tree's modules, in the same process;
- ``none``: this tree's kernels, ``mask=None``;
- ``all-real``: a mask with every step real (the kernels then run as with ``None``);
- ``one-pad``: every step real but the last step of one sequence: the masked loops,
  with almost nothing to skip (what the mask's bookkeeping costs);
- ``padded``: right-padded, lengths uniform in ``[T/2, T]`` (about 3/4 of the steps
  real; the loops still run all T steps, so this costs about what ``one-pad`` costs).

How
---
As ``bench_rnn.py``: ``--rounds`` rounds, each timing every variant once per mode in
turn (the first variant rotating), after ``--settle`` seconds of sleep and ``--warmup``
untimed calls; garbage collection off while timing. The table shows the MEDIAN time in
ms and its ratio to ``none``.

Usage::

    git archive HEAD | tar -x -C /tmp/crnn_old && (cd /tmp/crnn_old && \\
        python setup.py build_ext --inplace -q)
    python benchmarks/bench_masking.py --baseline /tmp/crnn_old
    python benchmarks/bench_masking.py --rounds 5 --cells lstm    # no baseline
"""
import argparse
import gc
import importlib.util
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from crnn import _gru, _lstm, _simple_rnn  # noqa: E402

CELLS = {"simple_rnn": (_simple_rnn, 1), "lstm": (_lstm, 4), "gru": (_gru, 3)}


def load_baseline(directory, name):
    """The extension module ``crnn.<name>`` built in ``directory`` (not registered in
    sys.modules, so this tree's module of the same name stays what ``crnn`` imports)."""
    package = os.path.join(directory, "crnn")
    for f in sorted(os.listdir(package)):
        if f.startswith(name + ".") and f.endswith(".so"):
            spec = importlib.util.spec_from_file_location(f"crnn.{name}",
                                                          os.path.join(package, f))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise SystemExit(f"no built crnn/{name}*.so under {directory}")


def problem(cell, G, B, T, D, H, rng):
    f32 = np.float32
    p = {"x": rng.standard_normal((B, T, D)).astype(f32),
         "h0": np.zeros((B, H), f32), "c0": np.zeros((B, H), f32),
         "W_x": (rng.standard_normal((D, G * H)) / np.sqrt(D)).astype(f32),
         "W_h": (0.5 * rng.standard_normal((H, G * H)) / np.sqrt(H)).astype(f32),
         "dhs": rng.standard_normal((B, T, H)).astype(f32)}
    p["b"] = np.zeros((2, G * H) if cell == "gru" else G * H, f32)
    return p


def runner(cell, module, p, mask, backward):
    """A no-argument function running one forward (and backward) call."""
    kw = {} if mask is None else {"mask": mask}
    x, h0, c0, W_x, W_h, b = (p[k] for k in ("x", "h0", "c0", "W_x", "W_h", "b"))
    dhs = p["dhs"]
    if cell == "simple_rnn":
        def run():
            hs = module.simple_rnn_forward(x, h0, W_x, W_h, b, **kw)
            if backward:
                module.simple_rnn_backward(x, h0, W_x, W_h, hs, dhs, None, **kw)
    elif cell == "lstm":
        def run():
            out = module.lstm_forward(x, h0, c0, W_x, W_h, b, **kw)
            if backward:
                module.lstm_backward(x, h0, c0, W_x, W_h, *out, dhs, None, None, **kw)
    else:
        def run():
            out = module.gru_forward(x, h0, W_x, W_h, b, **kw)
            if backward:
                module.gru_backward(x, h0, W_x, W_h, *out, dhs, None, **kw)
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", help="directory of another built crnn tree ('before')")
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--shape", nargs=4, type=int, default=[64, 100, 128, 256],
                    metavar=("B", "T", "D", "H"))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--settle", type=float, default=0.05)
    ap.add_argument("--json", help="write every raw time here")
    args = ap.parse_args()
    B, T, D, H = args.shape
    rng = np.random.default_rng(0)
    lengths = rng.integers(T // 2, T + 1, B)
    masks = {"none": None, "all-real": np.ones((B, T), bool),
             "one-pad": np.ones((B, T), bool),
             "padded": np.arange(T)[None, :] < lengths[:, None]}
    masks["one-pad"][0, -1] = False
    results = {}
    print(f"shape (B, T, D, H) = {tuple(args.shape)}, float32, median of {args.rounds} "
          f"rounds (ms; x: ratio to 'none')")
    for cell in args.cells:
        module, G = CELLS[cell]
        p = problem(cell, G, B, T, D, H, rng)
        variants = {}
        if args.baseline:
            variants["before"] = (load_baseline(args.baseline, "_" + cell), None)
        for name, m in masks.items():
            variants[name] = (module, m)
        for mode, backward in (("fwd", False), ("fwd+bwd", True)):
            runs = {name: runner(cell, mod, p, m, backward)
                    for name, (mod, m) in variants.items()}
            times = {name: [] for name in runs}
            names = list(runs)
            for r in range(args.rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for name in order:
                    time.sleep(args.settle)
                    for _ in range(args.warmup):
                        runs[name]()
                    gc.disable()
                    t0 = time.perf_counter()
                    runs[name]()
                    t1 = time.perf_counter()
                    gc.enable()
                    times[name].append(1e3 * (t1 - t0))
            med = {name: statistics.median(ts) for name, ts in times.items()}
            line = "  ".join(f"{name} {med[name]:7.2f} ({med[name] / med['none']:.2f}x)"
                             for name in names)
            print(f"{cell:10s} {mode:7s} {line}")
            results[f"{cell}/{mode}"] = {"median_ms": med, "times_ms": times}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": args.shape, "lengths": lengths.tolist(),
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
