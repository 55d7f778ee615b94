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


def reduce_gradients(net, comm, rows, total):
    """Sum over the ranks of each gradient times its rank's share of the minibatch (rows of
    total): the gradient of the whole minibatch's mean cost, on every rank, in place."""
    if comm.world == 1:
        return
    xp, share, grads = net.B.xp, rows / total, []
    for layer, p in net.owned_params():
        if p.grad is None:  # the same on every rank: the graph decides it, not the data
            continue
        with net.dev.on(layer.gpu):
            g = p.grad if p.grad.flags.c_contiguous else xp.ascontiguousarray(p.grad)
            g *= share
        p.grad = g
        grads.append(g)
    comm.allreduce_grads(grads)


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
