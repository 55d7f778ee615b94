"""What a net needs in memory, layer by layer, and the out-of-memory message convnet-train
prints with it (a table and a hint)."""
import numpy as np

from ..engine.layers import CostLayer, DataLayer


class OutOfMemory(Exception):
    """The host or the GPU ran out of memory; the message has the per-layer table and a hint."""


def is_out_of_memory(exc):
    """numpy's and CuPy's MemoryErrors, our kernels' cudaErrorMemoryAllocation, and numpy's
    refusal of an array larger than the address space."""
    if isinstance(exc, MemoryError):  # cupy.cuda.memory.OutOfMemoryError is one too
        return True
    if isinstance(exc, RuntimeError) and "cudaErrorMemoryAllocation" in str(exc):
        return True
    return isinstance(exc, ValueError) and str(exc).startswith(
        ("array is too big", "Maximum allowed size exceeded"))


def format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def memory_table(net, batch_size):
    """What `net` needs at minibatch size `batch_size`, layer by layer, as a text table.

    activations: the layer's output for one minibatch (labels are int64; costs have none);
    parameters: its own weights and biases three times over (values, momentum, gradient).
    Training holds every activation and, during backprop, its gradient.
    """
    itemsize = np.dtype(net.dtype).itemsize
    rows = [("layer", "type", "output", f"activations (--mini {batch_size})", "parameters")]
    total_act = total_par = 0
    for layer in net.layers:
        shape = tuple(layer.out_shape or ())
        if isinstance(layer, CostLayer):
            act = 0
        elif isinstance(layer, DataLayer) and shape == ():
            act = batch_size * 8
        else:
            act = batch_size * int(np.prod(shape, dtype=np.float64)) * itemsize
        par = 3 * itemsize * sum(int(np.prod(p.shape, dtype=np.float64))
                                 for p in layer.params if not p.shared)
        total_act, total_par = total_act + act, total_par + par
        rows.append((layer.name, layer.type, "x".join(map(str, shape)) or "-",
                     format_bytes(act), format_bytes(par)))
    rows.append(("total", "", "", format_bytes(total_act), format_bytes(total_par)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    need = 2 * total_act + total_par
    lines.append(f"training needs about {format_bytes(need)}: the activations and their "
                 f"gradients (2 x {format_bytes(total_act)}) plus the parameters with their "
                 f"momentum and gradients ({format_bytes(total_par)})")
    return "\n".join(lines), need


def out_of_memory_message(net, batch_size, exc, backend):
    table, need = memory_table(net, batch_size)
    where = "the GPU" if backend == "cuda" else "this machine"
    smaller = max(1, batch_size // 2)
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return (f"out of memory on {where} ({type(exc).__name__}: {first_line})\n"
            f"{table}\n"
            f"hint: the activations grow with the minibatch: try --mini {smaller}; or make the "
            f"largest layers above smaller")
