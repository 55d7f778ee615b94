"""NCCL through CuPy (cupy.cuda.nccl) behind comm.py's interface: the gradients, which live on
the GPU, are summed by NCCL on the current stream; everything small (costs, flags, hashes,
checkpoints, which are host arrays) goes over MPI as in MPIComm. Rank 0 makes NCCL's unique id
and broadcasts it over MPI, so a GPU job launches exactly as a CPU one (mpiexec, srun).

Not exercised on this project's CPU-only CI: the GPU proof issue runs it."""
import cupy
from cupy.cuda import nccl

from .comm import MPIComm

NCCL_TYPES = {"float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


class NcclComm(MPIComm):
    kind = "nccl"

    def __init__(self, device, timeout=0.0):
        """`device`: the physical GPU this rank's gradients live on (one per rank: NCCL refuses
        two ranks on one GPU)."""
        super().__init__(timeout)
        self.device = int(device)
        mine = (self.MPI.Get_processor_name(), self.device)
        same = [r for r, theirs in enumerate(self.allgather(mine)) if theirs == mine]
        if len(same) > 1:
            raise ValueError(f"ranks {', '.join(map(str, same))} all use GPU {self.device} of "
                             f"{mine[0]}: NCCL needs one GPU per rank (launch at most as many "
                             f"ranks per machine as it has GPUs)")
        uid = self.bcast(nccl.get_unique_id() if self.rank == 0 else None)
        with cupy.cuda.Device(self.device):
            self.comm_gpu = nccl.NcclCommunicator(self.world, uid, self.rank)

    def start_allreduce(self, arrays):
        """NCCL all-reduces of `arrays`, in place, queued on the current stream after what
        backward has queued there (no stream of their own yet: no overlap with backward)."""
        elsewhere = {a.device.id for a in arrays} - {self.device}
        if elsewhere:
            raise ValueError(f"gradients on GPU {min(elsewhere)}: the NCCL path reduces one "
                             f"GPU per rank (GPU {self.device}); a model-parallel net under "
                             f"mpiexec is not supported yet")
        with cupy.cuda.Device(self.device):
            stream = cupy.cuda.get_current_stream()
            nccl.groupStart()
            for a in arrays:
                kind = getattr(nccl, NCCL_TYPES[a.dtype.name])
                self.comm_gpu.allReduce(a.data.ptr, a.data.ptr, a.size, kind, nccl.NCCL_SUM,
                                        stream.ptr)
            nccl.groupEnd()
        return stream

    def wait(self, handles):
        with self.waiting("NCCL allreduce of the gradients"), cupy.cuda.Device(self.device):
            for stream in handles:
                stream.synchronize()

    def close(self):
        super().close()
        self.comm_gpu.destroy()
