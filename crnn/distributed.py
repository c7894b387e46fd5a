"""Several processes as one trainer: the MPI world through mpi4py.

Start the same script in ``N`` processes with an MPI launcher (``mpiexec -n N python
train.py``, or ``srun`` on Slurm) and call :func:`init` once in each. From then on
``model.fit`` trains data-parallel with Horovod's semantics (see
:mod:`crnn.training.distributed`): each process passes its own shard of the data,
``batch_size`` is per process, the weights start from rank 0's, and every step averages
the gradients over the ranks before the one optimizer update all of them apply.

The functions here are the few collectives that need, also usable in a loop of one's own:
:func:`allreduce_mean`, :func:`allreduce`, :func:`barrier`, :func:`broadcast`,
:func:`broadcast_arrays`, :func:`allgather`.

**The world of one.** A process not started by an MPI launcher (none of the variables in
``_LAUNCHER_VARIABLES`` is set, and the program has not imported ``mpi4py.MPI`` itself)
does not load MPI at all: :func:`init` makes a world of one process (``rank() == 0``,
``size() == 1``), every collective returns its input, and ``fit`` trains as in any plain
process. ``import crnn`` never imports mpi4py; :func:`init` does, and only in a process a
launcher started. A process a launcher started without mpi4py installed raises
ImportError: ``N`` processes training alone (and each writing the checkpoints) would be a
silently wrong result.

**Errors.** In a world of several processes :func:`init` installs a ``sys.excepthook``
that prints the exception and then calls ``MPI_Abort``: a rank that raises (and does not
catch the exception) ends every rank within seconds, instead of leaving them waiting in a
collective for it. A program that catches an exception on one rank and goes on must end
the world itself (:func:`abort`).
"""
import os
import sys

import numpy as np

__all__ = ["abort", "allgather", "allreduce", "allreduce_mean", "barrier", "broadcast",
           "broadcast_arrays", "init", "is_initialized", "local_rank", "local_size", "rank",
           "size"]

# Variables the common launchers set in each process they start: Open MPI's mpiexec,
# MPICH/Intel MPI (Hydra, PMI-1/2) and PMIx (Open MPI 5, Slurm's srun --mpi=pmix),
# MVAPICH2, and Slurm's srun --mpi=pmi2.
_LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK",
                       "MPI_LOCALNRANKS", "MV2_COMM_WORLD_SIZE")

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class _World:
    """The communicator once :func:`init` ran: mpi4py's (``comm``) or None for the world
    of one process."""

    def __init__(self, comm=None, mpi=None):
        self.comm, self.mpi = comm, mpi
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.local_rank, self.local_size = 0, 1
        if comm is not None and self.size > 1:
            node = comm.Split_type(mpi.COMM_TYPE_SHARED, key=self.rank)
            self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
            node.Free()


_world = None


def _launched():
    return any(os.environ.get(v) for v in _LAUNCHER_VARIABLES)


def init(comm=None):
    """Join the MPI world (once; later calls return at once).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The processes to train over (``MPI.COMM_WORLD`` by default): pass a
        sub-communicator to train several models side by side.

    Returns
    -------
    int
        The number of processes, :func:`size`.

    Raises
    ------
    ImportError
        Started by an MPI launcher (or given ``comm``) but mpi4py cannot be imported.
    """
    global _world
    if _world is not None:
        if comm is not None and comm is not _world.comm:
            raise ValueError(f"expected init(comm) once per process, got a second "
                             f"communicator after joining {_world.size} processes")
        return _world.size
    if comm is None and not _launched() and "mpi4py.MPI" not in sys.modules:
        _world = _World()
        return 1
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            f"crnn.distributed.init(): this process was started by an MPI launcher but "
            f"mpi4py cannot be imported ({e}); install it with pip install \"crnn[mpi]\" "
            f"(mpi4py and Open MPI) or, on a cluster, pip install mpi4py built against the "
            f"site's MPI") from None
    world = _World(MPI.COMM_WORLD if comm is None else comm, MPI)
    if world.size > 1:
        _install_abort_hook(world)
    _world = world
    return world.size


def _install_abort_hook(world):
    previous = sys.excepthook

    def hook(kind, value, traceback):
        try:
            sys.stderr.write(f"crnn.distributed: rank {world.rank} of {world.size} raised; "
                             f"aborting every rank\n")
            previous(kind, value, traceback)
            sys.stderr.flush()
            sys.stdout.flush()
        finally:
            world.comm.Abort(1)
    sys.excepthook = hook


def is_initialized():
    """Whether :func:`init` ran in this process (also when it made a world of one)."""
    return _world is not None


def _get():
    return _world if _world is not None else _World()


def rank():
    """This process's index, ``0 <= rank() < size()`` (0 before :func:`init`)."""
    return _get().rank


def size():
    """The number of processes training together (1 before :func:`init`)."""
    return _get().size


def local_rank():
    """This process's index among the processes on its machine."""
    return _get().local_rank


def local_size():
    """The number of processes on this machine (share its cores among them:
    ``crnn.set_num_threads(cores // local_size())``)."""
    return _get().local_size


def abort(code=1):
    """End every process of the world now (``MPI_Abort``); in a world of one, exit."""
    w = _get()
    if w.comm is not None:
        w.comm.Abort(int(code))
    sys.exit(int(code))


def barrier():
    """Wait until every process has called :func:`barrier`."""
    w = _get()
    if w.size > 1:
        w.comm.Barrier()


def allgather(obj):
    """The list of every rank's ``obj`` (any picklable object), in rank order."""
    w = _get()
    if w.size == 1:
        return [obj]
    return w.comm.allgather(obj)


def allreduce(buffer, op="sum"):
    """Sum (or ``op="max"``/``"min"``) a contiguous float array over the ranks, in place.

    Every rank passes an array of the same shape and dtype (not checked here: this is the
    per-step collective of ``fit``, whose layout is checked once when it starts; see
    :func:`allreduce_mean` for the checked one). Returns ``buffer``.
    """
    w = _get()
    if not (isinstance(buffer, np.ndarray) and buffer.flags.c_contiguous
            and buffer.flags.writeable and buffer.dtype in _FLOATS):
        got = (f"{buffer.dtype} array, contiguous={buffer.flags.c_contiguous}, "
               f"writeable={buffer.flags.writeable}" if isinstance(buffer, np.ndarray)
               else type(buffer).__name__)
        raise ValueError(f"expected a writeable C-contiguous float32 or float64 array, got "
                         f"{got}")
    ops = {"sum": "SUM", "max": "MAX", "min": "MIN"}
    if op not in ops:
        raise ValueError(f"expected op to be 'sum', 'max' or 'min', got {op!r}")
    if w.size > 1:
        w.comm.Allreduce(w.mpi.IN_PLACE, buffer, op=getattr(w.mpi, ops[op]))
    return buffer


def _as_list(arrays, what):
    single = isinstance(arrays, np.ndarray)
    items = [arrays] if single else arrays
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"expected {what} to be an array or a list of arrays, got "
                         f"{type(arrays).__name__}")
    out = []
    for i, a in enumerate(items):
        a = np.asarray(a)
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"expected {what}[{i}] to hold real numbers, got dtype "
                             f"{a.dtype}")
        out.append(a)
    return single, out


def allreduce_mean(arrays, weight=None):
    """The mean over the ranks of each array (as Horovod's ``allreduce``), through one
    contiguous float64 buffer.

    .. math::
        \\bar a = \\frac{\\sum_r w_r a_r}{\\sum_r w_r}

    with :math:`w_r = 1` by default, or ``weight`` (e.g. the rank's number of samples;
    a total weight of 0 gives zeros).

    Parameters
    ----------
    arrays : array or list of arrays
        The same shapes on every rank (checked: a mismatch raises ValueError on every rank).
    weight : float, optional
        This rank's weight, ``>= 0``.

    Returns
    -------
    array or list of arrays
        New arrays of the inputs' shapes, in float64 (or the input's float dtype).
    """
    single, items = _as_list(arrays, "arrays")
    if weight is None:
        weight = 1.0
    if isinstance(weight, (bool, np.bool_)) or not np.isscalar(weight) \
            or not np.isfinite(weight) or weight < 0:
        raise ValueError(f"expected weight to be a finite number >= 0, got {weight!r}")
    w = _get()
    shapes = [a.shape for a in items]
    if w.size > 1:
        seen = w.comm.allgather(shapes)
        if any(s != shapes for s in seen):
            differ = [r for r, s in enumerate(seen) if s != seen[0]]
            raise ValueError(f"expected arrays of the same shapes on every rank, got "
                             f"{seen[0]} on rank 0 and {seen[differ[0]]} on rank "
                             f"{differ[0]}")
    sizes = [a.size for a in items]
    buffer = np.empty(sum(sizes) + 1, dtype=np.float64)
    at = 0
    for a, n in zip(items, sizes):
        np.multiply(a.reshape(-1), float(weight), out=buffer[at:at + n])  # w_r a_r
        at += n
    buffer[at] = float(weight)
    allreduce(buffer)                                       # sum_r w_r a_r, sum_r w_r
    total = buffer[at]
    if total > 0:
        buffer[:at] /= total
    else:
        buffer[:at] = 0.0
    out, at = [], 0
    for a, n in zip(items, sizes):
        dtype = a.dtype if a.dtype in _FLOATS else np.dtype(np.float64)
        out.append(buffer[at:at + n].reshape(a.shape).astype(dtype))
        at += n
    return out[0] if single else out


def broadcast(obj, root=0):
    """Rank ``root``'s ``obj`` (any picklable object) on every rank."""
    w = _get()
    if w.size == 1:
        return obj
    return w.comm.bcast(obj, root=root)


def broadcast_arrays(arrays, root=0):
    """Copy rank ``root``'s arrays into every rank's, in place (the same shapes and
    dtypes on every rank, C-contiguous and writeable; checked beforehand by the caller).
    Returns ``arrays``."""
    w = _get()
    if w.size == 1:
        return arrays
    for a in arrays:
        if a.flags.c_contiguous and a.flags.writeable:
            w.comm.Bcast(a, root=root)
        else:
            tmp = np.ascontiguousarray(a)
            w.comm.Bcast(tmp, root=root)
            a[...] = tmp
    return arrays
