"""Numeric gradient checks in float64: the building block for op tests and `--check-grads`."""
from itertools import zip_longest

import numpy as np


def numeric_grad(loss, x, eps=1e-6, max_entries=None, rng=None):
    """d loss / d x by central differences; x is perturbed in place and restored.

    With max_entries, only that many randomly chosen entries are computed; the others are NaN.
    """
    grad = np.full(x.shape, np.nan)
    flat = x.reshape(-1)
    idx = np.arange(flat.size)
    if max_entries is not None and flat.size > max_entries:
        idx = (rng or np.random.default_rng(0)).choice(flat.size, max_entries, replace=False)
    for i in idx:
        grad.reshape(-1)[i] = central_difference(loss, flat, i, eps)
    return grad


def central_difference(loss, flat, i, eps):
    old = flat[i]
    flat[i] = old + eps
    plus = loss()
    flat[i] = old - eps
    minus = loss()
    flat[i] = old
    return (plus - minus) / (2 * eps)


def relative_error(a, n, floor=1e-8):
    """|a - n| / max(|a|, |n|, floor), elementwise."""
    return np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)


def smooth_difference(loss, flat, i, eps, tol, floor):
    """A central difference that is stable under halving the step, or None on a kink.

    A unit crossing a kink (ReLU at 0, a max-pool winner changing) makes the two estimates
    disagree; smaller steps make a crossing rarer, so they are tried next; an entry that stays
    unstable is not evidence either way, and the caller samples another.
    """
    for step in (eps, eps / 10, eps / 100):
        d1 = central_difference(loss, flat, i, step)
        d2 = central_difference(loss, flat, i, step / 2)
        if relative_error(d1, d2, floor) <= tol / 4:
            return d2
    return None


def check_net_grads(net, data, rng, entries=4, eps=1e-5, tol=1e-4):
    """Compare the net's analytic gradients with central differences on sampled entries.

    `net` must be float64; `data` is the batch given to net.forward. Returns a list of
    (layer or parameter name, worst relative error, entries checked), one per parameter array
    and one per data input.
    """
    step = 1
    net.zero_grads()
    net.forward(data, train=True, step=step)
    input_grads = net.backward(data_grads=True)
    owners = {}  # parameter -> the layers that use it (a shared weight has several)
    for layer in net.layers:
        for p in layer.params:
            owners.setdefault(id(p), []).append(layer.name)
    targets = [(p.name, p.value, p.grad, owners[id(p)]) for p in net.unique_params()]
    for layer in net.data_layers:
        if layer.cfg["dataIdx"] == 0 and layer.name in input_grads:
            value = data.get(layer.name, data.get(0))
            targets.append((layer.name, value, input_grads[layer.name], None))
    rows = []
    for name, value, grad, changed in targets:
        def loss():
            net.forward(data, train=True, step=step, changed=changed)
            return net.objective()

        flat, worst, checked = value.reshape(-1), 0.0, 0
        grad = np.asarray(grad).reshape(-1)
        floor = 1e-3 * float(np.abs(grad).max()) + 1e-12  # tiny entries: error vs the array's scale
        # alternate entries with a clear gradient and entries drawn from all (zeros included)
        strong = rng.permutation(np.flatnonzero(np.abs(grad) > floor))[: entries * 2]
        anywhere = rng.permutation(flat.size)[: entries * 2]
        order = [i for pair in zip_longest(strong, anywhere) for i in pair if i is not None]
        for i in order:
            numeric = smooth_difference(loss, flat, i, eps, tol, floor)
            if numeric is None:
                continue
            worst = max(worst, float(relative_error(grad[i], numeric, floor)))
            checked += 1
            if checked == entries:
                break
        net.forward(data, train=True, step=step)  # upstream activations must not stay perturbed
        rows.append((name, worst, checked))
    return rows
