"""Benchmark the recurrent layers: crnn against its NumPy reference and PyTorch.

What is measured
----------------
For each cell type (SimpleRNN, LSTM, GRU) and each shape ``(B, T, D, H)`` (batch, time
steps, input features, units), all in float32 and in one process:

- ``crnn``: ``crnn.SimpleRNN`` / ``crnn.LSTM`` / ``crnn.GRU`` ``(H,
  return_sequences=True, backend="cython")`` with default activations (GRU:
  ``reset_after=True``), called as a user calls it (its Python overhead included);
- ``reference``: the same layer with ``backend="reference"`` (the NumPy specification),
  holding the same weights;
- ``torch``: ``torch.nn.RNN`` (tanh) / ``nn.LSTM`` / ``nn.GRU`` ``(D, H,
  batch_first=True)`` with the crnn weights copied in (transposed; GRU gates reordered
  from Keras's z, r, h to PyTorch's r, z, n; SimpleRNN and LSTM get ``bias_ih_l0 =
  bias``, ``bias_hh_l0 = 0``), when torch is importable.

Two modes per implementation: ``fwd``, the forward pass without gradients (torch under
``torch.no_grad()``, crnn under ``crnn.no_grad()``: neither keeps what a backward pass
would need), and ``fwd+bwd``, the forward pass then the
backward pass of a fixed random gradient on every state ``(B, T, H)`` (crnn:
``layer(x)`` then ``layer.backward(grad)``; torch: ``rnn(x)`` with ``x.requires_grad``,
then ``out.backward(grad)``, with ``x.grad`` and the parameter grads set to None before
each call, outside the timed region). Inputs are generated once, outside the timed
region, as C-contiguous float32 arrays.

How
---
Each implementation is timed ``--repeats`` times per mode with ``time.perf_counter``
(garbage collection off during a call). The implementations are interleaved round-robin,
the starting one rotating each repeat, so that slow drifts of machine noise hit them
alike. The table reports the MEDIAN time (the JSON also the minimum and every raw time).

Before each timed call the harness sleeps ``--settle`` seconds, then makes ``--warmup``
untimed calls of the same implementation. The three implementations run on different
thread pools (crnn: its own, with OpenBLAS on one thread, see crnn.cores; reference:
NumPy's OpenBLAS; torch: OpenMP), whose
idle workers spin for a while after each call; back to back, one implementation's
spinning pool steals the cores of the next (measured on 2 cores: torch ~8x slower at the
small shape, crnn ~9x). The sleep lets the previous pool go idle, the untimed
calls wake this implementation's own pool, so each timed call runs as it would in a loop
of calls in a process of its own (checked against such loops: within noise). Torch runs
on as many threads as crnn (``crnn.get_num_threads()``). A
first call per implementation also checks that they agree (max abs difference of the
outputs and of dx, printed under the table).

Work is counted as GEMM flops: ``2*B*T*G*H*(D + H)`` for the forward pass (``G`` gates:
1, 4, 3) and three times that for forward+backward (backward does twice the forward's
GEMM work: gradients for the inputs/state and for the weights). GFLOP/s = flops / median
time. The SGEMM peak is measured first, in the same process: the best of a few
``(2048 x 2048) @ (2048 x 2048)`` float32 products through SciPy's OpenBLAS and through
PyTorch; ``%pk`` is each implementation's GFLOP/s as a fraction of it.

Usage::

    python benchmarks/bench_rnn.py            # all shapes, full repeats
    python benchmarks/bench_rnn.py --quick    # same shapes, fewer repeats (CI)
    python benchmarks/bench_rnn.py --cells lstm gru --shapes small medium --no-torch
"""
import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import crnn

SHAPES = {  # name: (B, T, D, H)
    "small": (32, 50, 32, 64),
    "medium": (64, 100, 128, 256),
    "large": (128, 100, 512, 1024),
}
CELLS = {  # name: (crnn layer, gates G)
    "simple_rnn": (crnn.SimpleRNN, 1),
    "lstm": (crnn.LSTM, 4),
    "gru": (crnn.GRU, 3),
}
IMPLS = ("crnn", "reference", "torch")
MODES = ("fwd", "fwd+bwd")
REPEATS, WARMUP = 15, 2
SETTLE = 0.2  # seconds: OpenBLAS's idle threads spin for ~0.1 s
QUICK_REPEATS, QUICK_WARMUP = 5, 2
QUICK_REFERENCE_MAX_GFLOP = 10.0  # --quick skips the reference above this forward work
SEED = 0
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# -- command line -----------------------------------------------------------------------
def parse_shape(text):
    """A shape name from SHAPES or an explicit ``BxTxDxH``."""
    if text in SHAPES:
        return text, SHAPES[text]
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(SHAPES)} or BxTxDxH, got {text!r}")
    return text, dims


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_REPEATS} repeats, {QUICK_WARMUP} warm-up calls, no NumPy "
                        f"reference above {QUICK_REFERENCE_MAX_GFLOP:g} forward GFLOP")
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS),
                   help="cell types to time (default: all)")
    p.add_argument("--shapes", nargs="+", type=parse_shape, metavar="SHAPE",
                   help=f"subset of {', '.join(SHAPES)} or explicit BxTxDxH (default: all)")
    p.add_argument("--repeats", type=int, help=f"timed runs (default {REPEATS})")
    p.add_argument("--warmup", type=int,
                   help=f"untimed calls before each timed call (default {WARMUP})")
    p.add_argument("--settle", type=float, default=SETTLE,
                   help=f"seconds of sleep before each timed call (default {SETTLE:g})")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    p.add_argument("--json", type=Path, metavar="PATH",
                   help="where to write the results (default "
                        "benchmarks/results/bench_rnn-<UTC timestamp>.json)")
    args = p.parse_args(argv)
    if args.shapes is None:
        args.shapes = list(SHAPES.items())
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else REPEATS
    if args.warmup is None:
        args.warmup = QUICK_WARMUP if args.quick else WARMUP
    if args.repeats < 1 or args.warmup < 0 or args.settle < 0:
        p.error("expected --repeats >= 1, --warmup >= 0 and --settle >= 0")
    return args


# -- environment ------------------------------------------------------------------------
def import_torch(disabled):
    """``(torch module or None, note)``."""
    if disabled:
        return None, "torch skipped (--no-torch)"
    try:
        import torch
    except ImportError as e:
        return None, f"torch skipped (not importable: {e})"
    return torch, None


def threadpools():
    """threadpoolctl's view of the native thread pools, or None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{k: lib.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                       "architecture", "num_threads", "filepath")}
            for lib in threadpool_info()]


def blas_threads(pools):
    """Threads of the OpenBLAS crnn calls (SciPy's), else of the first OpenBLAS; or None."""
    blas = [p for p in pools or () if p["internal_api"] == "openblas"]
    scipy_blas = [p for p in blas if "scipy.libs" in (p["filepath"] or "")]
    chosen = (scipy_blas or blas or [None])[0]
    return None if chosen is None else chosen["num_threads"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(torch):
    """Versions, CPU, thread pools; sets torch's threads to crnn's."""
    import scipy
    import crnn._simple_rnn  # noqa: F401  (loads the BLAS crnn uses before we look)
    pools = threadpools()
    n = crnn.get_num_threads()
    if torch is not None:
        torch.set_num_threads(n)
        pools = threadpools()  # after set_num_threads, to show torch's pool as set
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "crnn": crnn.__version__,
        "torch": None if torch is None else torch.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "blas_threads": blas_threads(pools),
        "crnn_threads": n,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "threadpools": pools,
    }


def print_environment(env, torch_note):
    print(f"python {env['python']}  numpy {env['numpy']}  scipy {env['scipy']}  "
          f"crnn {env['crnn']}  torch {env['torch'] or '-'}")
    print(f"CPU: {env['cpu']} ({env['cpu_count']} logical CPUs)")
    print(f"OPENBLAS_CORETYPE: {env['OPENBLAS_CORETYPE'] or '(not set)'}")
    if env["threadpools"] is None:
        print("thread pools: unknown (threadpoolctl not installed)")
    else:
        for p in env["threadpools"]:
            where = "/".join(Path(p["filepath"] or "?").parent.parts[-2:])
            print(f"thread pool: {p['internal_api']:<9} {p['architecture'] or '-':<10} "
                  f"num_threads={p['num_threads']}  ({p['prefix']} {p['version'] or ''} "
                  f"in {where})")
    if env["torch"] is not None:
        print(f"crnn.get_num_threads(): {env['crnn_threads']}  "
              f"torch.get_num_threads(): {env['torch_threads']}")
    if torch_note:
        print(torch_note)


# -- the implementations ----------------------------------------------------------------
def make_inputs(shape):
    """Input ``x (B, T, D)`` and output gradient ``(B, T, H)``: C-contiguous float32."""
    B, T, D, H = shape
    rng = np.random.default_rng(SEED)
    x = np.ascontiguousarray(rng.standard_normal((B, T, D)), dtype=np.float32)
    grad = np.ascontiguousarray(rng.standard_normal((B, T, H)), dtype=np.float32)
    return x, grad


def make_layer(cell, shape, backend, weights=None):
    B, T, D, H = shape
    layer = CELLS[cell][0](H, return_sequences=True, dtype="float32", backend=backend,
                           seed=SEED)
    layer.build((B, T, D))
    if weights is not None:
        layer.set_weights(weights)
    return layer


def make_torch_rnn(torch, cell, shape, weights):
    _, _, D, H = shape
    if cell == "gru":
        from crnn.layers.gru import weights_to_torch
        rnn = torch.nn.GRU(D, H, batch_first=True, dtype=torch.float32)
        w_ih, w_hh, b_ih, b_hh = weights_to_torch(weights)
    else:
        kernel, recurrent_kernel, bias = weights
        rnn = (torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float32) if cell == "lstm"
               else torch.nn.RNN(D, H, batch_first=True, nonlinearity="tanh",
                                 dtype=torch.float32))
        w_ih, w_hh, b_ih, b_hh = kernel.T, recurrent_kernel.T, bias, np.zeros_like(bias)
    with torch.no_grad():
        for param, value in ((rnn.weight_ih_l0, w_ih), (rnn.weight_hh_l0, w_hh),
                             (rnn.bias_ih_l0, b_ih), (rnn.bias_hh_l0, b_hh)):
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return rnn


def layer_calls(layer, x, grad):
    """``{mode: (prepare, call)}`` for a crnn layer; ``call`` returns (out, dx or None)."""
    def fwd():
        with crnn.no_grad():
            return layer(x), None

    def fwd_bwd():
        out = layer(x)
        return out, layer.backward(grad)

    return {"fwd": (None, fwd), "fwd+bwd": (None, fwd_bwd)}


def torch_calls(torch, rnn, x, grad):
    """``{mode: (prepare, call)}`` for torch; ``prepare`` runs untimed before each call."""
    x_plain = torch.from_numpy(x)
    x_grad = torch.from_numpy(x.copy()).requires_grad_(True)
    grad_t = torch.from_numpy(grad)

    def fwd():
        with torch.no_grad():
            out, _ = rnn(x_plain)
        return out, None

    def clear_grads():
        x_grad.grad = None
        rnn.zero_grad(set_to_none=True)

    def fwd_bwd():
        out, _ = rnn(x_grad)
        out.backward(grad_t)
        return out, x_grad.grad

    return {"fwd": (None, fwd), "fwd+bwd": (clear_grads, fwd_bwd)}


def build_impls(cell, shape, torch, with_reference):
    """``{impl: {mode: (prepare, call)}}`` over the same inputs and weights."""
    x, grad = make_inputs(shape)
    layer = make_layer(cell, shape, "cython")
    weights = layer.get_weights()
    impls = {"crnn": layer_calls(layer, x, grad)}
    if with_reference:
        impls["reference"] = layer_calls(make_layer(cell, shape, "reference", weights), x,
                                         grad)
    if torch is not None:
        impls["torch"] = torch_calls(torch, make_torch_rnn(torch, cell, shape, weights), x,
                                     grad)
    return impls


def to_numpy(a):
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def agreement(impls):
    """Max abs difference of each implementation's output and dx from crnn's (one call)."""
    results = {}
    for name, calls in impls.items():
        prepare, call = calls["fwd+bwd"]
        if prepare is not None:
            prepare()
        out, dx = call()
        results[name] = (to_numpy(out).copy(), to_numpy(dx).copy())
    out0, dx0 = results["crnn"]
    return {name: {"out": float(np.max(np.abs(out - out0))),
                   "dx": float(np.max(np.abs(dx - dx0)))}
            for name, (out, dx) in results.items() if name != "crnn"}


# -- timing -----------------------------------------------------------------------------
def time_call(prepare, call):
    """Seconds for one ``call()``; ``prepare()`` runs first, untimed."""
    if prepare is not None:
        prepare()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()


def time_interleaved(impls, mode, repeats, warmup, settle):
    """``{impl: [seconds, ...]}``: round-robin over impls, rotating the first each repeat.

    Before each timed call: ``settle`` seconds of sleep, so that the thread pools of the
    implementation that ran before go idle, then ``warmup`` untimed calls, so that this
    implementation's own pool is awake as in a loop of calls.
    """
    names = list(impls)
    times = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            prepare, call = impls[name][mode]
            time.sleep(settle)
            for _ in range(warmup):
                time_call(prepare, call)
            times[name].append(time_call(prepare, call))
    return times


def flops(cell, shape, mode):
    B, T, D, H = shape
    forward = 2 * B * T * CELLS[cell][1] * H * (D + H)
    return forward if mode == "fwd" else 3 * forward


def sgemm_peak(torch, repeats=5, n=2048):
    """Best GFLOP/s of an ``n x n x n`` float32 product: ``{"openblas": ..., "torch": ...,
    "peak": max}`` (SciPy's OpenBLAS, the one crnn calls; and PyTorch's BLAS)."""
    from scipy.linalg.blas import sgemm
    rng = np.random.default_rng(SEED)
    a = np.asfortranarray(rng.standard_normal((n, n)), dtype=np.float32)
    b = np.asfortranarray(rng.standard_normal((n, n)), dtype=np.float32)
    calls = {"openblas": lambda: sgemm(1.0, a, b)}
    if torch is not None:
        ta, tb = torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))
        calls["torch"] = lambda: torch.mm(ta, tb)
    result = {}
    for name, call in calls.items():
        time.sleep(SETTLE)
        call()
        best = min(time_call(None, call) for _ in range(repeats))
        result[name] = 2 * n ** 3 / best / 1e9
    result["peak"] = max(result.values())
    return result


def summarize(times, n_flops):
    """Per impl: raw times, median, min, GFLOP/s at the median; plus the ratios."""
    stats = {name: {"times_s": ts, "median_s": statistics.median(ts), "min_s": min(ts),
                    "gflops": n_flops / statistics.median(ts) / 1e9}
             for name, ts in times.items()}
    ratios = {}
    crnn_t = stats["crnn"]["median_s"]
    if "torch" in stats:
        ratios["crnn/torch"] = crnn_t / stats["torch"]["median_s"]
        ratios["torch/crnn"] = stats["torch"]["median_s"] / crnn_t
    if "reference" in stats:
        ratios["crnn/reference"] = crnn_t / stats["reference"]["median_s"]
    return {"flops": n_flops, "impls": stats, "ratios": ratios}


def bench_shape(cell, name, shape, torch, args):
    """Everything measured for one cell type and shape, as a JSON-ready dict."""
    forward_gflop = flops(cell, shape, "fwd") / 1e9
    with_reference = not (args.quick and forward_gflop > QUICK_REFERENCE_MAX_GFLOP)
    impls = build_impls(cell, shape, torch, with_reference)
    gc.collect()
    result = {"cell": cell, "name": name, "shape": dict(zip("BTDH", shape)),
              "reference_skipped": not with_reference,
              "max_abs_diff_vs_crnn": agreement(impls), "modes": {}}
    for mode in MODES:
        times = time_interleaved(impls, mode, args.repeats, args.warmup, args.settle)
        result["modes"][mode] = summarize(times, flops(cell, shape, mode))
    return result


# -- report -----------------------------------------------------------------------------
HEADER = ("{:<10} {:<16} {:<7}|{:^20}|{:^15}|{:^20}|{:^19}|{:^7}".format(
              "", "", "", "crnn", "reference", "torch", "crnn vs torch", "crnn/")
          + "\n" + "{:<10} {:<16} {:<7}|{:>8}{:>7}{:>5}|{:>8}{:>7}|{:>8}{:>7}{:>5}|{:>5} {:>13}|{:>7}"
          .format("cell", "shape B,T,D,H", "mode", "ms", "GF/s", "%pk", "ms", "GF/s", "ms",
                  "GF/s", "%pk", "ratio", "speedup", "ref"))


def format_impl(stats, peak=None):
    """``ms GF/s`` (and ``%pk`` when a peak is given) of one implementation."""
    pct = "" if peak is None else "{:>5}".format("-")
    if stats is None:
        return "{:>8}{:>7}".format("-", "-") + pct
    if peak:
        pct = "{:>5.0f}".format(100 * stats["gflops"] / peak)
    return "{:>8.2f}{:>7.1f}".format(stats["median_s"] * 1e3, stats["gflops"]) + pct


def format_speedup(torch_over_crnn):
    if torch_over_crnn >= 1:
        return f"{torch_over_crnn:.2f}x faster"
    return f"{1 / torch_over_crnn:.2f}x slower"


def format_row(result, mode, peak):
    m = result["modes"][mode]
    ratios = m["ratios"]
    if "crnn/torch" in ratios:
        vs_torch = "{:>5.2f} {:>13}".format(ratios["crnn/torch"],
                                            format_speedup(ratios["torch/crnn"]))
    else:
        vs_torch = "{:>5} {:>13}".format("-", "-")
    vs_ref = ("{:>7.2f}".format(ratios["crnn/reference"]) if "crnn/reference" in ratios
              else "{:>7}".format("-"))
    shape = "x".join(str(v) for v in result["shape"].values())
    impls = m["impls"]
    return "{:<10} {:<16} {:<7}|{}|{}|{}|{}|{}".format(
        result["cell"], shape, mode, format_impl(impls.get("crnn"), peak),
        format_impl(impls.get("reference")), format_impl(impls.get("torch"), peak),
        vs_torch, vs_ref)


def print_table(results, peak):
    print(HEADER)
    print("-" * len(HEADER.splitlines()[1]))
    for result in results:
        for mode in MODES:
            print(format_row(result, mode, peak))


def print_notes(results, args, torch_note):
    print(f"ms: median of {args.repeats} interleaved calls, each after a {args.settle:g} s "
          f"pause and {args.warmup} untimed calls")
    print("GF/s: GFLOP/s, 2*B*T*G*H*(D+H) flops (G gates; x3 for fwd+bwd) / median; "
          "%pk: percent of the measured SGEMM peak")
    print("ratio: crnn time / other time (< 1: crnn faster); speedup: torch time / crnn time")
    for r in results:
        shape = r["cell"] + " " + "x".join(str(v) for v in r["shape"].values())
        diffs = ", ".join(f"{name} out {d['out']:.1e} dx {d['dx']:.1e}"
                          for name, d in r["max_abs_diff_vs_crnn"].items())
        if diffs:
            print(f"{shape}: max |diff| vs crnn: {diffs}")
        if r["reference_skipped"]:
            print(f"{shape}: NumPy reference skipped (--quick, forward work > "
                  f"{QUICK_REFERENCE_MAX_GFLOP:g} GFLOP)")
    if torch_note:
        print(torch_note)


def write_json(path, payload):
    if path is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"bench_rnn-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
    return path


def main(argv=None):
    args = parse_args(argv)
    torch, torch_note = import_torch(args.no_torch)
    env = environment(torch)
    print_environment(env, torch_note)
    started = datetime.now(timezone.utc)
    peak = sgemm_peak(torch)
    print("SGEMM peak (2048^3 float32, best of 5): "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    print()
    results = [bench_shape(cell, name, shape, torch, args)
               for cell in args.cells for name, shape in args.shapes]
    print_table(results, peak["peak"])
    print()
    print_notes(results, args, torch_note)
    payload = {
        "benchmark": "SimpleRNN/LSTM/GRU float32, return_sequences=True",
        "started_utc": started.isoformat(),
        "settings": {"quick": args.quick, "repeats": args.repeats, "warmup": args.warmup,
                     "settle_s": args.settle,
                     "interleaved": "round-robin, first impl rotating each repeat; before "
                                    "each timed call a settle sleep and warmup untimed calls",
                     "statistic": "median",
                     "flops": "fwd 2*B*T*G*H*(D+H); fwd+bwd 3x"},
        "sgemm_peak_gflops": peak,
        "environment": env,
        "notes": [n for n in (torch_note,) if n],
        "results": results,
    }
    print(f"wrote {write_json(args.json, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
