"""A training step of a net with cuda-convnet2's replicas (gpu=0,1,...): the minibatch's slices
run one after another, each a whole forward and backward on its rows, and each weight layer
updates after the passes its schedule says (convnet/engine/replicas.py), on the gradients since
its last update averaged by rows.

The rows are split as the ranks' are (parallel.split_rows): a rank's rows of the minibatch,
then its replicas' slices of those; a slice's dropout masks are its rows of the one-process
mask (the net's row0), and its gradients are weighted by its share of the rows they average,
as GradientBuckets weights a rank's. Across ranks each update's gradients are summed in place
(the same allreduce as the rank path), so ranks x replicas follow the one-process run without
replicas where the net has one pass (cc2's 2gpu-data) up to the order of summation.

The replicas run on the layer's first device, one after another (no copy of the weights per
device yet)."""
from ..parallel import SingleProcess, split_rows


def slice_rows(total, world, slices):
    """[[(lo, hi) of slice i of rank r in the minibatch] for r in ranks]: each rank's rows
    (split_rows over the ranks), split again into `slices` contiguous slices."""
    out = []
    for rank in range(world):
        lo, hi = split_rows(total, rank, world)
        out.append([(lo + a, lo + b) for a, b in (split_rows(hi - lo, i, slices)
                                                  for i in range(slices))])
    return out


class ReplicaStep:
    """Net.train_step for a net whose schedule has replicas; the same interface."""

    def __init__(self, net, comm=SingleProcess()):
        self.net, self.comm, self.s = net, comm, net.schedule
        self.owner = {id(p): layer.name for layer, p in net.owned_params()}
        upstream = {layer.name for layer in net.cost_layers}
        for layer in reversed(net.layers):
            if layer.name in upstream:
                upstream.update(layer.inputs)
        # the parameters backward gives gradients: the graph decides, the same on every rank
        self.learns = {id(p) for layer in net.layers if layer.name in upstream
                       for p in layer.params}

    def __call__(self, data, step, progress, check=None):
        """One step on the minibatch `data` ({0: images, 1: labels, ...}, every rank's rows:
        each rank takes its own). check(stats) sees each pass's cost statistics before that
        pass's updates (this rank's rows of it; none for a pass without them). Returns this
        rank's cost statistics summed over its slices."""
        net, s = self.net, self.s
        total = len(data[1])
        self.rows = slice_rows(total, self.comm.world, s.rmax)
        mine = self.rows[self.comm.rank]
        summed, acc = {}, {}
        # an updatePeriod of several minibatches: the (reduced) sum Param.update keeps
        carried = {id(p): p.grad for p in net.unique_params() if p.grad is not None}
        for p in range(s.passes):
            pass_stats = {}
            for i in range(p * s.rmin, (p + 1) * s.rmin):
                lo, hi = mine[i]
                if hi == lo:  # fewer rows than slices: this slice has none (as in cc2)
                    continue
                net.row0 = lo
                net.zero_grads()
                net.forward({k: v[lo:hi] for k, v in data.items()}, train=True, step=step)
                add_stats(pass_stats, net.cost_stats())
                net.backward()
                self.accumulate(acc, p, hi - lo)
            if check is not None and pass_stats:
                check(pass_stats)
            add_stats(summed, pass_stats)
            self.update(acc, carried, p, progress)
        net.row0 = 0
        return summed

    def accumulate(self, acc, p, n):
        """Add this slice's gradients to each parameter's sum, weighted by the slice's share of
        the rows (of every rank) that parameter's next update averages."""
        for layer, param in self.net.owned_params():
            if param.grad is None:
                continue
            share = n / self.group_rows(param, p)
            g = param.grad * share
            acc[id(param)] = g if id(param) not in acc else acc[id(param)] + g
        self.net.zero_grads()

    def group_rows(self, param, p):
        """The rows (of every rank) that the update of `param` covering pass p averages."""
        lo, hi = self.s.group(self.owner[id(param)], p)
        return sum(b - a for ranks in self.rows for a, b in ranks[lo:hi])

    def update(self, acc, carried, p, progress):
        """The updates due after pass p: each one's gradients summed over the ranks, then the
        paper's update (Param.update, which also keeps updatePeriods of whole minibatches)."""
        net = self.net
        due = [(layer, param) for layer, param in net.owned_params()
               if id(param) in self.learns and self.s.updates_after(self.owner[id(param)], p)
               and self.group_rows(param, p)]  # a group without rows (mini < slices): none
        grads = []
        for layer, param in due:  # every rank reduces the same arrays, rows or none
            with net.dev.on(layer.gpu):
                g = acc.pop(id(param), None)
                param.grad = net.B.xp.zeros_like(param.value) if g is None else \
                    net.B.xp.ascontiguousarray(g)
            grads.append(param.grad)
        if self.comm.world > 1 and grads:
            self.comm.allreduce_grads(grads)
        with net.dev.fenced():
            for layer, param in due:
                with net.dev.on(layer.gpu):
                    if id(param) in carried:
                        param.grad = carried.pop(id(param)) + param.grad
                    param.update(net.B, progress)


def add_stats(into, stats):
    for layer, values in stats.items():
        mine = into.setdefault(layer, dict.fromkeys(values, 0))
        for key, value in values.items():
            mine[key] += value
