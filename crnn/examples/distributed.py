"""Data-parallel training over MPI: the same script in every process, each on its shard.

Run it on one machine with two processes (``pip install "crnn[mpi]"`` first)::

    mpiexec -n 2 python -m crnn.examples.distributed

(Open MPI run as root also needs ``--allow-run-as-root``; more processes than cores,
``--oversubscribe``), or on a Slurm cluster, 4 nodes with one process each::

    srun --nodes 4 --ntasks-per-node 1 --mpi=pmix python -m crnn.examples.distributed

Without a launcher (``python -m crnn.examples.distributed``) it trains in one process,
the world of one. It is not part of ``crnn demo``, which runs in one process.

Task
    The adding problem: sequences of ``T`` = 50 steps of (value in [0, 1), marker); the
    target is the sum of the two marked values. Each process holds its own shard of the
    training set (here every rank makes the same data set from one seed and keeps every
    ``size``-th sample; a real job reads its own files).
Model
    ``Input(T, 2) -> GRU(32) -> Dense(1)``, Adam on the mean squared error, ``batch_size``
    per process (the global batch is the sum over processes).
Shows
    :func:`crnn.distributed.init`, the threads shared among the processes of a machine,
    the global loss and validation loss that every rank sees alike (printed by rank 0),
    EarlyStopping deciding alike on every rank, ModelCheckpoint written by rank 0 only,
    ``evaluate`` over every rank's shard, and the time per epoch.
"""
import argparse
import os
import time

import numpy as np

import crnn
from crnn import distributed
from crnn.examples.gradients import adding_problem

T, UNITS = 50, 32


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mpiexec -n N python -m crnn.examples.distributed",
        description="Data-parallel training of a GRU on the adding problem over MPI.")
    parser.add_argument("--samples", type=int, default=4096,
                        help="training samples over all processes (default 4096)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="per process (default 32)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per process (default: the machine's cores shared "
                             "among its processes)")
    parser.add_argument("--out", default="crnn-distributed",
                        help="folder for rank 0's checkpoint (default ./crnn-distributed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    distributed.init()
    rank, size = distributed.rank(), distributed.size()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    crnn.set_num_threads(args.threads or max(1, cores // distributed.local_size()))

    rng = np.random.default_rng(args.seed)                # the same data set on every rank
    x, y = adding_problem(args.samples, T, rng)
    x_val, y_val = adding_problem(1024, T, rng)
    x, y = x[rank::size], y[rank::size]                   # this rank's shards
    x_val, y_val = x_val[rank::size], y_val[rank::size]

    model = crnn.Sequential([crnn.Input(shape=(T, 2)), crnn.GRU(UNITS, seed=args.seed),
                             crnn.Dense(1, seed=args.seed + 1)])
    model.compile(crnn.optimizers.Adam(0.01, clipnorm=1.0), "mse", metrics=["mae"])
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
    callbacks = [crnn.callbacks.EarlyStopping(monitor="val_loss", patience=3,
                                              restore_best_weights=True),
                 crnn.callbacks.ModelCheckpoint(os.path.join(args.out, "best.weights.npz"),
                                                save_best_only=True,
                                                save_weights_only=True)]
    if rank == 0:
        print(f"{size} process(es), {crnn.get_num_threads()} thread(s) each; "
              f"{args.samples} samples, global batch {args.batch_size * size}", flush=True)
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(x_val, y_val), callbacks=callbacks,
                        verbose=2 if rank == 0 else 0, seed=args.seed)
    seconds = time.perf_counter() - start
    loss, mae = model.evaluate(x_val, y_val, batch_size=256, verbose=0)
    if rank == 0:
        epochs = len(history.history["loss"])
        print(f"validation over every rank's shard: mse {loss:.4f}, mae {mae:.4f} "
              f"(always predicting the mean, 1: mse 1/6 = 0.1667)")
        print(f"{epochs} epochs in {seconds:.1f} s, {seconds / epochs:.2f} s an epoch")
    return history


if __name__ == "__main__":
    main()
