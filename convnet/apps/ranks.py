"""convnet-train under a launcher (`mpiexec -n N`, `srun`): what differs per rank.

Rank 0 alone prints and writes; the others' stdout goes to /dev/null. A rank that fails prints
its rank and the reason and ends the whole job (MPI_Abort), so no rank waits forever in a
collective for one that is gone."""
import contextlib
import os
import sys
import traceback


@contextlib.contextmanager
def rank0_output(comm):
    """stdout is rank 0's alone (the progress bar, the test lines, --describe)."""
    if comm.rank == 0:
        yield
        return
    saved = sys.stdout
    with open(os.devnull, "w") as sink:
        sys.stdout = sink
        try:
            yield
        finally:
            sys.stdout = saved


def fail(comm, message, code):
    """Print `message` (naming the rank in a job of several) and return `code`; in a job of
    several, end every rank with it."""
    where = f"rank {comm.rank} of {comm.world}: " if comm.world > 1 else ""
    print(f"convnet-train: {where}{message}", file=sys.stderr, flush=True)
    if comm.world > 1:
        comm.abort(code)
    return code


def crash(comm, exc):
    """An unexpected exception on one rank of several: its traceback, then the job ends."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    print("".join(f"[rank {comm.rank}] {line}\n" for line in text.splitlines()),
          file=sys.stderr, end="", flush=True)
    return fail(comm, f"{type(exc).__name__}: {exc}", 1)


def say(comm, message, file=None):
    """Print from rank 0 only (a message every rank would print alike)."""
    if comm.rank == 0:
        print(message, file=file or sys.stderr, flush=True)


def rank_gpus(comm, gpus, devices):
    """The physical GPUs of one rank's `devices` logical devices: --gpu as given on one
    process; under a launcher, rank r of a machine takes GPUs r x devices.. (offset by --gpu's
    first, when given)."""
    if comm.world == 1:
        return gpus
    first = gpus[0] if gpus else 0
    return tuple(first + comm.local_rank * devices + d for d in range(devices))


def describe_world(comm):
    return (f"data parallel over {comm.world} ranks ({comm.kind}); each takes its rows of every "
            f"minibatch")
