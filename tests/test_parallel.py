"""convnet/parallel and the trainer's use of it on one process (no MPI needed): how a minibatch
is split over ranks, what a launcher's environment says, and that one process reduces to the
identity. The job-level proofs (mpiexec, 2-3 ranks) are test_distributed.py's."""
import numpy as np
import pytest

from convnet.parallel import SingleProcess, connect, launched_size, split_rows
from convnet.training.distributed import (disagreeing_ranks, reduce_stats, share_checkpoint,
                                          weights_digest)


@pytest.mark.parametrize("n,world", [(128, 2), (100, 3), (7, 7), (5, 3), (1000, 16)])
def test_split_rows_covers_the_minibatch_in_rank_order_evenly(n, world):
    parts = [split_rows(n, r, world) for r in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [hi - lo for lo, hi in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_100_over_3_ranks_is_34_33_33():
    assert [split_rows(100, r, 3) for r in range(3)] == [(0, 34), (34, 67), (67, 100)]


@pytest.mark.parametrize("environ,size", [
    ({}, 1), ({"PMI_SIZE": "4"}, 4), ({"OMPI_COMM_WORLD_SIZE": "3"}, 3),
    ({"SLURM_STEP_NUM_TASKS": "16"}, 16), ({"SLURM_NTASKS": "8"}, 1), ({"PMI_SIZE": ""}, 1)])
def test_launched_size_reads_the_launchers_variables(environ, size):
    """An sbatch script itself (SLURM_NTASKS, no job step) is one process."""
    assert launched_size(environ) == size


def test_one_process_needs_no_mpi_and_every_collective_is_the_identity(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    comm = connect(timeout=5)
    assert isinstance(comm, SingleProcess) and (comm.rank, comm.world) == (0, 1)
    arrays = {"w": np.arange(3.0)}
    assert comm.bcast_arrays(arrays) is arrays and comm.gather(2) == [2]
    found = (3, arrays, {"epoch": 1})
    assert share_checkpoint(comm, found) is found
    assert disagreeing_ranks(comm, arrays) is None


def test_reduce_stats_keeps_the_numbers_and_reads_the_flags():
    stats = {"logprob": {"cost": 1.5, "top1": 2.0, "cases": 4}}
    summed, flags = reduce_stats(SingleProcess(), stats, stop=True, save=False)
    assert summed == stats and isinstance(summed["logprob"]["cases"], int)
    assert flags == {"stop": True, "save": False}


def test_weights_digest_sees_one_changed_bit():
    a = {"w": np.linspace(0, 1, 10), "b": np.zeros(2)}
    b = {k: v.copy() for k, v in a.items()}
    assert weights_digest(a) == weights_digest(b)
    b["w"][3] = np.nextafter(b["w"][3], 2)
    assert weights_digest(a) != weights_digest(b)
