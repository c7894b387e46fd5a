"""Benchmark the LSTM's per-step recurrent GEMM: crnn's packed GEMM against OpenBLAS.

What is measured
----------------
For each benchmark shape ``(B, T, D, H)`` of ``bench_rnn.py`` (``G = 4H``), the two
products the LSTM's time loop makes at every step, with the operands laid out as in the
kernel (one time step of a batch-first buffer: rows ``T*G`` or ``T*H`` elements apart):

- ``fwd``: ``gates[:, t] += h_{t-1} @ W_h``, ``(B x H) @ (H x G)``;
- ``bwd``: ``dh_next = dz[:, t] @ W_h^T``, ``(B x G) @ (G x H)``.

Two implementations, each making ``--steps`` products back to back in one call (as the
time loop does):

- ``packed``: ``crnn._lstm._step_gemm_packed``, ``W`` packed once per call into 64-column
  panels (src/crnn/_pgemm.h), then the products one after another on crnn's thread pool
  (work claiming, one phase per product). The packing is inside the timed call, as it is
  inside every LSTM call.
- ``blas``: ``crnn._lstm._step_gemm_blas``, SciPy's OpenBLAS ``sgemm`` per product,
  with W as stored and with a transposed copy (``op = N`` / ``T``); the table shows both.

How
---
The implementations alternate call by call (the first one rotating each repeat), each
call preceded by ``--settle`` seconds of sleep (OpenBLAS's idle threads spin for ~0.1 s,
crnn's pool for 2 ms: back to back, one pool's spinning threads would steal the
cores of the other) and one untimed warm-up call. Reported: the MEDIAN time per product
over ``--repeats`` calls, its GFLOP/s (``2*M*N*K`` per product), and the ratio of the
best BLAS variant's median to the packed median (above 1: packed is faster). The machine
is shared: trust ratios, taken when ``/proc/loadavg`` is low (printed first).

With ``--kernels``, the same interleaving times the whole kernels instead: one
``crnn._lstm.lstm_forward`` call (``fwd``) and ``lstm_forward`` + ``lstm_backward``
(``fwd+bwd``, a random gradient on every h_t), float32 with the default activations, on
the packed path against the BLAS path (``crnn._lstm._force_path``); this is what the
rule choosing between them (``_lstm._packed_path``) was set from.

Usage::

    python benchmarks/bench_step_gemm.py
    python benchmarks/bench_step_gemm.py --shapes 64x100x128x256 --repeats 31 --steps 50
    OMP_NUM_THREADS=1 python benchmarks/bench_step_gemm.py   # one thread for packed
    python benchmarks/bench_step_gemm.py --kernels --shapes 8x50x16x16 small medium
"""
import argparse
import gc
import os
import statistics
import time

import numpy as np

from crnn import _lstm

SHAPES = {  # as bench_rnn.py: name: (B, T, D, H)
    "small": (32, 50, 32, 64),
    "medium": (64, 100, 128, 256),
    "large": (128, 100, 512, 1024),
}


def parse_shape(text):
    if text in SHAPES:
        return text, SHAPES[text]
    dims = tuple(int(v) for v in text.lower().split("x"))
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(SHAPES)} or BxTxDxH")
    return text, dims


def operands(direction, B, T, H, rng):
    """(A, W, C, accumulate): one step of the kernel's buffers, A @ W into C."""
    G = 4 * H
    W_h = (rng.standard_normal((H, G)) / np.sqrt(H)).astype(np.float32)
    if direction == "fwd":
        hs = rng.standard_normal((B, T, H)).astype(np.float32)
        gates = rng.standard_normal((B, T, G)).astype(np.float32)
        return hs[:, T // 2], W_h, gates[:, T // 2], True
    dz = rng.standard_normal((B, T, G)).astype(np.float32)
    dh = np.zeros((B, H), np.float32)
    return dz[:, T // 2], np.ascontiguousarray(W_h.T), dh, False


def callers(A, W, C, accumulate, steps):
    """{name: call} for the packed GEMM and both BLAS variants."""
    beta = 1.0 if accumulate else 0.0
    Wt = np.ascontiguousarray(W.T)
    return {
        "packed": lambda: _lstm._step_gemm_packed(A, W, C, accumulate, steps),
        "blas N": lambda: _lstm._step_gemm_blas(A, W, "n", C, beta, steps),
        "blas T": lambda: _lstm._step_gemm_blas(A, Wt, "t", C, beta, steps),
    }


def time_interleaved(calls, repeats, settle, steps):
    names = list(calls)
    times = {n: [] for n in names}
    for rep in range(repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for n in order:
            time.sleep(settle)
            calls[n]()  # warm-up: wakes this implementation's threads
            gc.disable()
            t0 = time.perf_counter()
            calls[n]()
            t1 = time.perf_counter()
            gc.enable()
            times[n].append((t1 - t0) / steps)
    return {n: statistics.median(v) for n, v in times.items()}


def kernel_callers(B, T, D, H, rng):
    """{(mode, path): call} for the whole LSTM kernels on either path."""
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    h0 = (0.5 * rng.standard_normal((B, H))).astype(np.float32)
    c0 = (0.5 * rng.standard_normal((B, H))).astype(np.float32)
    W_x = (rng.standard_normal((D, 4 * H)) / np.sqrt(D)).astype(np.float32)
    W_h = (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(np.float32)
    b = (0.1 * rng.standard_normal(4 * H)).astype(np.float32)
    dhs = rng.standard_normal((B, T, H)).astype(np.float32)

    def run(path, backward):
        previous = _lstm._force_path(path)
        try:
            hs, cs, gates = _lstm.lstm_forward(x, h0, c0, W_x, W_h, b)
            if backward:
                _lstm.lstm_backward(x, h0, c0, W_x, W_h, hs, cs, gates, dhs, None, None)
        finally:
            _lstm._force_path(previous)

    return {(mode, path): (lambda p=path, bw=(mode == "fwd+bwd"): run(p, bw))
            for mode in ("fwd", "fwd+bwd") for path in ("packed", "blas")}


def main_kernels(args):
    rng = np.random.default_rng(0)
    header = (f"{'shape':<18} {'mode':<8} {'packed ms':>10} {'blas ms':>10} "
              f"{'blas/packed':>11}")
    print(header)
    print("-" * len(header))
    for name, (B, T, D, H) in args.shapes:
        calls = kernel_callers(B, T, D, H, rng)
        for mode in ("fwd", "fwd+bwd"):
            med = time_interleaved({path: calls[mode, path] for path in ("packed", "blas")},
                                   args.repeats, args.settle, 1)
            print(f"{name:<18} {mode:<8} {med['packed'] * 1e3:>10.3f} "
                  f"{med['blas'] * 1e3:>10.3f} {med['blas'] / med['packed']:>11.2f}",
                  flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=list(SHAPES.items()))
    p.add_argument("--directions", nargs="+", choices=["fwd", "bwd"], default=["fwd", "bwd"])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--steps", type=int, default=0,
                   help="products per call (default: the shape's T, at most 100)")
    p.add_argument("--settle", type=float, default=0.2)
    p.add_argument("--kernels", action="store_true",
                   help="time the whole LSTM kernels on the packed and the BLAS path")
    args = p.parse_args(argv)
    print(f"loadavg: {open('/proc/loadavg').read().split()[:3]}  "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}  "
          f"packed variant {_lstm._packed_isa()} (2 AVX-512, 1 AVX2, 0 C)")
    if args.kernels:
        return main_kernels(args)
    rng = np.random.default_rng(0)
    header = (f"{'shape':<18} {'dir':<4} {'M x N x K':<18} {'packed us':>10} "
              f"{'blas N us':>10} {'blas T us':>10} {'packed GF/s':>11} "
              f"{'blas GF/s':>10} {'blas/packed':>11}")
    print(header)
    print("-" * len(header))
    for name, (B, T, D, H) in args.shapes:
        steps = args.steps or min(T, 100)
        for direction in args.directions:
            A, W, C, accumulate = operands(direction, B, T, H, rng)
            M, K, N = A.shape[0], A.shape[1], W.shape[1]
            med = time_interleaved(callers(A, W, C, accumulate, steps), args.repeats,
                                   args.settle, steps)
            best_blas = min(med["blas N"], med["blas T"])
            flops = 2.0 * M * N * K
            print(f"{name:<18} {direction:<4} {f'{M}x{N}x{K}':<18} "
                  f"{med['packed'] * 1e6:>10.1f} {med['blas N'] * 1e6:>10.1f} "
                  f"{med['blas T'] * 1e6:>10.1f} {flops / med['packed'] / 1e9:>11.1f} "
                  f"{flops / best_blas / 1e9:>10.1f} {best_blas / med['packed']:>11.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
