"""Data-parallel training on paper and on this machine: a cost model per step for N nodes,
and the measured 1 against 2 processes.

What is computed
----------------
For each configuration (the four models of ``bench_fit.py`` at batch 64 per process, and
each cell of ``bench_rnn.py`` at its three shapes ``B, T, D, H``: ``Input(T, D) ->
Cell(H, return_sequences=True)``, mean squared error, batch ``B`` per process), all
float32 with Adam:

- ``t_c``: the compute time of one training step on one node. With ``--compute-from``
  it comes from the saved results of the other benchmarks (a node is then the machine
  they ran on, with their threads): ``bench_rnn.py``'s crnn forward+backward median for
  a layer, ``bench_fit.py``'s crnn epoch median divided by its steps for a model.
  Otherwise it is measured here: one step of ``fit`` in one process on one thread (the
  median over ``--epochs`` epochs of ``--steps`` steps each, after a warm-up epoch);
- ``M``: the bytes of the gradients (4 per parameter), what every step allreduces;
- the allreduce time of a ring over ``N`` nodes (Patarasuk and Yuan's bandwidth-optimal
  allreduce: a reduce-scatter and an allgather, ``2 (N - 1)`` messages of ``M / N``
  bytes each way) at bandwidth ``beta`` and latency ``alpha`` per message, plus the one
  small allreduce that ``fit`` adds per step to agree on a stop (``ceil(log2 N)``
  latencies)::

      t_ar(N) = 2 (N - 1) alpha + 2 (N - 1) / N * M / beta + ceil(log2 N) alpha

  at 10 Gbit/s (``alpha`` = 30 us, TCP over Ethernet) and 100 Gbit/s (``alpha`` = 3 us,
  RDMA over InfiniBand or RoCE): the latencies are assumptions typical of such networks,
  not measured here;
- the predicted speedup in samples per second with ``N`` nodes, each process keeping its
  batch (Horovod's weak scaling; crnn's allreduce starts after the backward pass, so
  nothing overlaps)::

      S(N) = N t_c / (t_c + t_ar(N))

- beside it, measured on this machine: one process (``t_1``) and ``mpiexec -n 2``
  (``t_2``), one thread per process, each process the same ``--steps`` steps of its own
  shard per epoch, as ``S(2) = 2 t_1 / t_2``; and the time of one allreduce of ``M``
  bytes between the two processes (shared memory; median and least of 20). The runs of
  1 and 2 processes alternate for ``--rounds`` rounds; the table gives the medians.

Usage::

    python benchmarks/bench_distributed.py                 # everything (minutes)
    python benchmarks/bench_distributed.py --quick         # fewer repeats, small shapes
    python benchmarks/bench_distributed.py --no-measure    # the cost model only
    python benchmarks/bench_distributed.py --compute-from benchmarks/results/bench_rnn-X.json \
        benchmarks/results/bench_fit-Y.json                # t_c from those runs

Needs ``pip install "crnn[mpi]"`` for the measured columns.
"""
import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import crnn
from crnn import distributed
from bench_fit import BATCH, CRNN_LOSSES, MODELS  # benchmarks/ (this folder) is on sys.path
from bench_rnn import CELLS, SHAPES, cpu_model

NODES = (2, 8, 64)
NETWORKS = {"10G": (10e9 / 8, 30e-6), "100G": (100e9 / 8, 3e-6)}   # bytes/s, latency s
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 0


def configurations(quick):
    """``name -> (description, batch per process)``: the fit models, then the layers."""
    out = {name: (MODELS[name][0], BATCH)
           for name in MODELS}
    for cell in CELLS:
        for shape_name, (B, T, D, H) in SHAPES.items():
            if quick and shape_name != "small":
                continue
            out[f"{cell}-{shape_name}"] = (f"{cell} {B}x{T}x{D}x{H}", B)
    return out


def build(name, steps):
    """The compiled model and ``steps`` batches of data for one process."""
    if name in MODELS:
        _, data, make, kind = MODELS[name]
        x, y = data()
        n = min(len(x), steps * BATCH)
        model = make()
        model.compile(crnn.optimizers.Adam(1e-3), CRNN_LOSSES[kind])
        return model, x[:n], y[:n], BATCH
    cell, shape_name = name.rsplit("-", 1)
    B, T, D, H = SHAPES[shape_name]
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((steps * B, T, D)).astype(np.float32)
    y = rng.standard_normal((steps * B, T, H)).astype(np.float32)
    model = crnn.Sequential([crnn.Input((T, D)), CELLS[cell][0](H, return_sequences=True)])
    model.compile(crnn.optimizers.Adam(1e-3), "mse")
    return model, x, y, B


def ring_allreduce(n, grad_bytes, bandwidth, latency):
    """Seconds of a ring allreduce of ``grad_bytes`` over ``n`` nodes, plus the stop
    flag's small allreduce (see the module docstring)."""
    return (2 * (n - 1) * latency + 2 * (n - 1) / n * grad_bytes / bandwidth
            + math.ceil(math.log2(n)) * latency)


def speedup(n, t_c, t_ar):
    return n * t_c / (t_c + t_ar)


# -- measured under mpiexec -----------------------------------------------------------------
class _EpochTimer(crnn.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def worker(name, steps, epochs):
    """One process (or rank) of a measured run: prints the median seconds per step (of
    rank 0) and of one allreduce of the gradient bytes, and ``M``, as JSON."""
    crnn.set_num_threads(1)
    distributed.init()
    model, x, y, B = build(name, steps)
    timer = _EpochTimer()
    model.fit(x, y, batch_size=B, epochs=1 + epochs, verbose=0, shuffle=False,
              callbacks=[timer])                       # the first epoch warms up
    times = [t / math.ceil(len(x) / B) for t in timer.seconds[1:]]
    buffer = np.zeros(sum(w.size for w in model.trainable_weights), dtype=np.float32)
    ar = []
    for _ in range(20):
        distributed.barrier()
        t0 = time.perf_counter()
        distributed.allreduce(buffer)
        ar.append(time.perf_counter() - t0)
    if distributed.rank() == 0:
        print(json.dumps({"step": statistics.median(times),
                          "allreduce": statistics.median(ar), "allreduce_min": min(ar),
                          "grad_bytes": 4 * int(buffer.size)}), flush=True)


def saved_compute_times(paths):
    """``config -> seconds`` of one training step from saved ``bench_rnn`` results
    (forward+backward, crnn's median) and ``bench_fit`` results (crnn's median epoch over
    its steps), and the threads they ran on."""
    out, threads = {}, set()
    for path in paths:
        with open(path) as f:
            saved = json.load(f)
        if "epochs_seconds" in saved:                      # bench_fit
            threads.add(saved.get("threads"))
            for name, libs in saved["epochs_seconds"].items():
                if name in MODELS and "crnn" in libs:
                    n = len(MODELS[name][1]()[0])
                    out[name] = statistics.median(libs["crnn"]) / math.ceil(n / BATCH)
        else:                                              # bench_rnn
            threads.add(saved.get("environment", {}).get("blas_threads"))
            for r in saved["results"]:
                impl = r["modes"].get("fwd+bwd", {}).get("impls", {}).get("crnn")
                if impl:
                    out[f"{r['cell']}-{r['name']}"] = impl["median_s"]
    return out, sorted(str(t) for t in threads)


def run_worker(name, steps, epochs, processes):
    """The worker's JSON: in one plain process (``processes=1``, the world of one) or
    under ``mpiexec -n processes``; one thread per process."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name,
           "--steps", str(steps), "--epochs", str(epochs)]
    if processes > 1:
        exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        exe = exe if os.path.exists(exe) else shutil.which("mpiexec")
        version = subprocess.run([exe, "--version"], capture_output=True,
                                 text=True).stdout
        flags = (["--allow-run-as-root", "--oversubscribe"] if "Open MPI" in version
                 else [])
        cmd = [exe, *flags, "-n", str(processes), *cmd]
    env = dict(os.environ, OMP_NUM_THREADS="1", CRNN_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shapes, fewer repeats")
    p.add_argument("--configs", nargs="*", help="only these configurations")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per epoch (default: by the step's time, 2 to 16)")
    p.add_argument("--epochs", type=int, default=None, help="timed epochs (default 3)")
    p.add_argument("--rounds", type=int, default=None,
                   help="runs of 1 and 2 processes in turn, medians (default 3; 1 for "
                        "steps over a second)")
    p.add_argument("--compute-from", nargs="+", metavar="JSON",
                   help="take t_c from these saved bench_rnn / bench_fit results")
    p.add_argument("--no-measure", action="store_true",
                   help="the cost model only, no run of 2 processes")
    p.add_argument("--worker", metavar="CONFIG", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.epochs)
        return
    crnn.set_num_threads(1)
    configs = configurations(args.quick)
    if args.configs:
        configs = {k: v for k, v in configs.items() if k in args.configs}
    now = datetime.now(timezone.utc)
    print(f"# {cpu_model()}; crnn on 1 thread per process; {now:%Y-%m-%d %H:%M} UTC")
    saved, saved_threads = ({}, None) if not args.compute_from else \
        saved_compute_times(args.compute_from)
    if saved:
        print(f"# t_c from {', '.join(args.compute_from)} (threads {saved_threads})")
        configs = {k: v for k, v in configs.items() if k in saved}
    head = ("| configuration | batch/proc | t_c ms | grad MB | " +
            " | ".join(f"S({n}) {net}" for net in NETWORKS for n in NODES) +
            " | here: 1 proc ms | 2 procs ms | S(2) | allreduce ms (min) |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    rows = []
    for name, (desc, batch) in configs.items():
        epochs = args.epochs or (1 if args.quick else 3)
        probe = run_worker(name, 1, 1, 1)["step"]      # the step's order of magnitude
        steps = args.steps or (2 if probe > 1.0 else 4 if probe > 0.1 else 16)
        rounds = args.rounds or (1 if args.quick or probe > 1.0 else 3)
        ones, twos = [], []
        for _ in range(rounds):            # 1 and 2 processes in turn: drifts hit both
            ones.append(run_worker(name, steps, epochs, 1))
            if not args.no_measure:
                twos.append(run_worker(name, steps, epochs, 2))
        t_1 = statistics.median(r["step"] for r in ones)
        t_c = saved.get(name, t_1)
        grad_bytes = ones[0]["grad_bytes"]
        row = {"config": name, "description": desc, "batch": batch, "t_c": t_c, "t_1": t_1,
               "grad_bytes": grad_bytes, "predicted": {}}
        cells = []
        for net, (bandwidth, latency) in NETWORKS.items():
            for n in NODES:
                s = speedup(n, t_c, ring_allreduce(n, grad_bytes, bandwidth, latency))
                row["predicted"][f"{net}-{n}"] = s
                cells.append(f"{s:.1f}")
        measured = f"{t_1 * 1e3:.1f} | - | -"
        ar = "-"
        if not args.no_measure:
            t2 = statistics.median(r["step"] for r in twos)
            ar_s = statistics.median(r["allreduce"] for r in twos)
            row["allreduce_2_min"] = min(r["allreduce_min"] for r in twos)
            row.update({"t_2": t2, "allreduce_2": ar_s, "measured_speedup_2": 2 * t_1 / t2})
            measured = f"{t_1 * 1e3:.1f} | {t2 * 1e3:.1f} | {2 * t_1 / t2:.2f}"
            ar = f"{ar_s * 1e3:.3f} ({row['allreduce_2_min'] * 1e3:.3f})"
        print(f"| {desc} | {batch} | {t_c * 1e3:.1f} | {grad_bytes / 1e6:.3f} | "
              + " | ".join(cells) + f" | {measured} | {ar} |", flush=True)
        rows.append(row)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%MZ")
    path = RESULTS_DIR / f"bench_distributed-{stamp}.json"
    with open(path, "w") as f:
        json.dump({"cpu": cpu_model(), "networks": {k: {"bytes_per_s": b, "latency_s": a}
                                                    for k, (b, a) in NETWORKS.items()},
                   "rows": rows}, f, indent=1)
    print(f"# written {path}")


if __name__ == "__main__":
    main()
