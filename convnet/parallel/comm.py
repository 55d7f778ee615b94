"""The collectives data parallelism needs, behind one interface: one process (no MPI), MPI
through mpi4py (NumPy buffers, in place), and NCCL through CuPy (nccl.py, the same interface).

    rank, world, local_rank     this process, the job's size, its index on its machine
    rows(n)                     (lo, hi): this rank's rows of an n-row minibatch
    allreduce_grads(arrays)     sum the gradient buffers over the ranks, in place
    start_allreduce(arrays), wait(handles)    the same, started now and finished later
    allreduce(values)           sum a few float64 values (costs, counts, flags): a new array
    bcast_arrays(arrays)        rank 0's {name: array} on every rank (None on the others)
    bcast(obj), gather(obj), allgather(obj)   small picklable objects
    abort(code)                 end every rank of the job (after the message is printed)

Each collective runs under a watchdog (`timeout` seconds, 0: none): a collective that waits
longer, because another rank died or stalls, prints which one and aborts the job instead of
hanging."""
import os
import sys
import threading
import time

import numpy as np

# what launchers set in each rank's environment: MPICH's Hydra and Intel MPI (PMI), Open MPI,
# SLURM's srun (for the job step it starts; an sbatch script itself has no step)
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
# seconds between a failing rank's message and MPI_Abort, for the launcher to forward the
# message before it tears the job down (once, under load, a job's stderr arrived empty)
ABORT_GRACE_S = 1.0


def launched_size(environ=os.environ):
    """The job size a launcher (mpiexec, srun) gave this process; 1 when none did."""
    for name in SIZE_VARIABLES:
        if environ.get(name, "").isdigit():
            return int(environ[name])
    return 1


def split_rows(n, rank, world):
    """(lo, hi) of rank's rows of n: contiguous, the first n % world ranks one row more."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class SingleProcess:
    """World size 1: every collective is the identity; no MPI is imported."""
    kind, rank, world, local_rank = "single", 0, 1, 0

    def rows(self, n):
        return split_rows(n, self.rank, self.world)

    def allreduce_grads(self, arrays):
        self.wait([self.start_allreduce(arrays)])

    def start_allreduce(self, arrays):
        return None

    def wait(self, handles):
        pass

    def allreduce(self, values):
        return np.array(values, dtype=np.float64)

    def bcast_arrays(self, arrays):
        return arrays

    def bcast(self, obj):
        return obj

    def gather(self, obj):
        return [obj]

    def allgather(self, obj):
        return [obj]

    def abort(self, code):
        sys.exit(code)

    def close(self):
        pass


class Watchdog:
    """Aborts the job when one collective has waited `timeout` seconds."""

    def __init__(self, comm, timeout):
        self.comm, self.timeout = comm, float(timeout)
        self.pending = None  # (name, started)
        if self.timeout > 0:
            threading.Thread(target=self.watch, daemon=True, name="collective-watchdog").start()

    def watch(self):
        while self.timeout > 0:  # close() ends the thread
            time.sleep(min(1.0, self.timeout / 10))
            pending = self.pending
            if pending and 0 < self.timeout < time.monotonic() - pending[1]:
                self.comm.report(f"the collective '{pending[0]}' has waited more than "
                                 f"{self.timeout:g} s (--collective-timeout): another rank has "
                                 f"died or stalls; ending the job")
                self.comm.abort(124)

    def __call__(self, name):
        return _Pending(self, name)


class _Pending:
    def __init__(self, dog, name):
        self.dog, self.name = dog, name

    def __enter__(self):
        self.dog.pending = (self.name, time.monotonic())

    def __exit__(self, *exc):
        self.dog.pending = None


class MPIComm(SingleProcess):
    """MPI_COMM_WORLD through mpi4py: NumPy buffers reduced in place (MPI.IN_PLACE)."""
    kind = "mpi"

    def __init__(self, timeout=0.0):
        try:
            from mpi4py import MPI  # only a launched job needs it (the [mpi] extra)
        except ImportError:
            raise RuntimeError(f"started as one of {launched_size()} ranks, but mpi4py is not "
                               f"installed: pip install 'convnet[mpi]'") from None

        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.world = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = node.Get_rank()
        node.Free()
        self.waiting = Watchdog(self, timeout)

    def report(self, message):
        """One line to stderr, naming this rank (os.write: the watchdog thread may call it)."""
        text = f"convnet-train: rank {self.rank} of {self.world}: {message}\n"
        os.write(sys.stderr.fileno(), text.encode())

    def start_allreduce(self, arrays):
        """MPI_Iallreduce of each array, in place: the requests."""
        return [self.comm.Iallreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM) for a in arrays]

    def wait(self, handles):
        with self.waiting("allreduce of the gradients"):
            self.MPI.Request.Waitall([r for requests in handles for r in requests])

    def allreduce(self, values):
        out = np.array(values, dtype=np.float64)
        with self.waiting("allreduce of the step's costs and flags"):
            self.comm.Allreduce(self.MPI.IN_PLACE, out, op=self.MPI.SUM)
        return out

    def bcast_arrays(self, arrays):
        layout = None if self.rank else [(k, a.shape, a.dtype.str) for k, a in arrays.items()]
        layout = self.bcast(layout)
        out = {}
        with self.waiting("broadcast of the arrays"):
            for name, shape, dtype in layout:
                a = np.ascontiguousarray(arrays[name]) if self.rank == 0 else np.empty(shape, dtype)
                self.comm.Bcast(a, root=0)
                out[name] = a
        return out

    def bcast(self, obj):
        with self.waiting("broadcast"):
            return self.comm.bcast(obj, root=0)

    def gather(self, obj):
        with self.waiting("gather to rank 0"):
            return self.comm.gather(obj, root=0)

    def allgather(self, obj):
        with self.waiting("allgather"):
            return self.comm.allgather(obj)

    def abort(self, code):
        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(ABORT_GRACE_S)  # the launcher forwards what was printed before it kills us
        self.comm.Abort(code)
        os._exit(code)  # not reached where Abort ends the job

    def close(self):
        self.waiting.timeout = 0.0
