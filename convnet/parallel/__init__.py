"""Data parallelism: the ranks of an MPI job (mpiexec, srun) and their collectives.

connect() gives the one interface (comm.py) the trainer uses: SingleProcess when no launcher
started this process (mpi4py is not imported then), else MPIComm (NumPy arrays); on_gpu()
turns it into NcclComm (nccl.py, CuPy) once the net is known to be on the cuda backend."""
from .comm import MPIComm, SingleProcess, launched_size, split_rows

__all__ = ["connect", "on_gpu", "launched_size", "split_rows", "SingleProcess", "MPIComm"]


def connect(timeout=0.0):
    """The job's communicator; `timeout`: the watchdog's seconds per collective (0: none)."""
    return MPIComm(timeout) if launched_size() > 1 else SingleProcess()


def on_gpu(comm, device):
    """`comm` for a cuda-backend net whose gradients live on physical GPU `device`: NCCL sums
    them (a one-rank job keeps its SingleProcess)."""
    if comm.world == 1:
        return comm
    from .nccl import NcclComm  # CuPy: only for the cuda backend

    timeout = comm.waiting.timeout
    comm.close()
    return NcclComm(device, timeout)
