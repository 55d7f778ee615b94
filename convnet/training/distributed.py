"""What the training loop does across the ranks of a data-parallel job (convnet/parallel).

Every rank holds the whole net and takes its rows of the one minibatch; the gradients are
averaged weighted by rows before the update, so N ranks follow the 1-rank run up to the order of
summation. Each step also sums the costs and the stop/save flags, so every rank tests, saves and
stops at the same batch. On one process every function here is the identity."""
import hashlib

import numpy as np


def reduce_stats(comm, stats, **flags):
    """(stats summed over the ranks, {flag: True when any rank set it}); one allreduce.

    stats: {cost layer: {key: number}} as Net.cost_stats() gives them."""
    keys = [(layer, key) for layer in sorted(stats) for key in sorted(stats[layer])]
    summed = comm.allreduce([stats[layer][key] for layer, key in keys] +
                            [float(bool(v)) for v in flags.values()])
    out = {layer: dict(values) for layer, values in stats.items()}
    for (layer, key), value in zip(keys, summed):
        out[layer][key] = int(value) if isinstance(stats[layer][key], int) else float(value)
    return out, {name: bool(v) for name, v in zip(flags, summed[len(keys):])}


BUCKET_BYTES = 25 * 2**20  # gradients started together: fewer, larger messages


class GradientBuckets:
    """The gradients of the whole minibatch's mean cost on every rank: each gradient times its
    rank's share of the minibatch (rows of total), summed over the ranks in place.

    Reductions start during backward, in reverse layer order: a parameter's gradient is final
    once backward has passed the first layer (in net order) holding it, and the gradients
    final so far start together once they reach BUCKET_BYTES (the fc layers' first, AlexNet's
    largest). The buckets are the same on every rank: the graph decides which gradients exist,
    not the data. finish() starts the rest and waits for all before the update."""

    def __init__(self, net, comm, bucket_bytes=BUCKET_BYTES):
        self.net, self.comm, self.bucket_bytes = net, comm, bucket_bytes
        holders = {}
        for layer in net.layers:
            for p in layer.params:
                holders.setdefault(id(p), layer.name)
        self.final_at = {}  # layer name: the owned parameters whose gradients are final there
        for layer, p in net.owned_params():
            self.final_at.setdefault(holders[id(p)], []).append((layer, p))

    def begin(self, rows, total):
        self.share, self.ready, self.ready_bytes = rows / total, [], 0
        self.started, self.pending = set(), []

    def layer_done(self, layer):
        """Net.backward's on_layer: queue the gradients final at `layer`, start a full bucket."""
        for owner, p in self.final_at.get(layer.name, ()):
            self.queue(owner, p)
        if self.ready_bytes >= self.bucket_bytes:
            self.start()

    def queue(self, owner, p):
        if p.grad is None or id(p) in self.started:
            return
        with self.net.dev.on(owner.gpu):
            g = p.grad if p.grad.flags.c_contiguous else self.net.B.xp.ascontiguousarray(p.grad)
            g *= self.share
        p.grad = g
        self.started.add(id(p))
        self.ready.append(g)
        self.ready_bytes += g.nbytes

    def start(self):
        if self.ready:
            self.pending.append(self.comm.start_allreduce(self.ready))
        self.ready, self.ready_bytes = [], 0

    def finish(self):
        for owner, p in self.net.owned_params():  # any not final where expected (none, so far)
            self.queue(owner, p)
        self.start()
        self.comm.wait(self.pending)


def weights_digest(arrays):
    """A short hash of {name: array} (the checkpoint's arrays), in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()[:16]


def disagreeing_ranks(comm, arrays):
    """None when every rank holds the same arrays; else 'rank 0 holds ..., ranks 1, 2 hold ...'."""
    if comm.world == 1:
        return None
    digests = comm.allgather(weights_digest(arrays))
    if len(set(digests)) == 1:
        return None
    groups = {}
    for rank, digest in enumerate(digests):
        groups.setdefault(digest, []).append(rank)
    return ", ".join(f"rank{'s' * (len(r) > 1)} {', '.join(map(str, r))} hold{'s' * (len(r) == 1)} "
                     f"{d}" for d, r in groups.items())


def share_checkpoint(comm, found):
    """Rank 0's loaded checkpoint (step, arrays, state) or None, on every rank: the arrays by
    MPI broadcast of their buffers, so the ranks need no shared filesystem."""
    if comm.world == 1:
        return found
    head = comm.bcast(None if found is None else (found[0], found[2]))
    if head is None:
        return None
    arrays = comm.bcast_arrays(found[1] if comm.rank == 0 else None)
    return head[0], arrays, head[1]


def shard(comm, batches, views=False):
    """This rank's rows of each (x, labels) batch (x (V, N, ...) when views); a rank with no
    rows of a batch gets None for it, so every rank walks the same batches."""
    for x, labels in batches:
        lo, hi = comm.rows(len(labels))
        if hi == lo:
            yield None
        else:
            yield (x[:, lo:hi] if views else x[lo:hi]), labels[lo:hi]


def gather_rows(comm, pieces):
    """Rank 0: each batch's rows from every rank, in batch then rank order (the single-process
    order), as one array; the other ranks: None."""
    everyone = comm.gather(pieces)
    if comm.rank:
        return None
    return np.concatenate([part for batch in zip(*everyone) for part in batch])
