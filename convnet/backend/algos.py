"""Which kernel algorithm each conv/local call runs: the `algo=` of the cuda backend's ops.

The algorithms and the rule for which shapes each can run live in csrc/conv.h and conv.cu
(`convnet._C.conv_algorithms`, `convnet._C.conv_algo_unsupported`); this module only picks.
`choose(op, shape, precision)` returns, for fp32, the table's entry for that exact shape
(algos.json, written from the timings of a GPU run: benchmarks/bench_kernels.py --ab, then
benchmarks/report.py --algo-table), else the op's default; tf32 and bf16 have one kernel each. No environment is read: a caller who wants another algorithm passes
`algo=` explicitly.
"""
import json
import os

from convnet import _C
from convnet.backend import precision as precisions

OPS = ("conv_forward", "conv_backward_data", "conv_backward_filter",
       "local_forward", "local_backward_data", "local_backward_filter")
DEFAULT = "gemm"
TABLE_PATH = os.path.join(os.path.dirname(__file__), "algos.json")
SHAPE_FIELDS = ("N", "C", "H", "W", "F", "fs", "OH", "OW", "stride", "padding", "groups")


def shape_key(shape):
    """'N,C,H,W,F,fs,OH,OW,stride,padding,groups': the table's key for a ConvShape tuple."""
    return ",".join(str(int(v)) for v in shape)


def load_table(path=TABLE_PATH):
    """{op: {shape_key: algo}}, checked: every op and algorithm must exist."""
    with open(path) as f:
        table = json.load(f)
    names = names_of_algorithms()
    for op, entries in table.items():
        if op not in OPS:
            raise ValueError(f"{path}: unknown op {op!r} (one of {', '.join(OPS)})")
        for key, algo in entries.items():
            if len(key.split(",")) != len(SHAPE_FIELDS):
                raise ValueError(f"{path}: {op} key {key!r} is not {','.join(SHAPE_FIELDS)}")
            if names and algo not in names:
                raise ValueError(f"{path}: {op} {key}: unknown algorithm {algo!r}")
    return table


def names_of_algorithms():
    """The algorithms convnet._C was built with, in the order the kernels index them."""
    return tuple(getattr(_C, "conv_algorithms", ())) if _C is not None else ()


def precision_of(name):
    """The precision algorithm `name` computes in (convnet._C.conv_algorithm_precisions)."""
    names = names_of_algorithms()
    return dict(zip(names, getattr(_C, "conv_algorithm_precisions", ())))[name]


_table = None


def choose(op, shape, precision="fp32"):
    """The algorithm name for `op` on ConvShape tuple `shape` at `precision`: for fp32 the
    table's, else DEFAULT; for tf32 and bf16 their tensor-core kernel, mma_<precision>."""
    global _table
    if precision != "fp32":
        return f"mma_{precision}"
    if _table is None:
        _table = load_table()
    return _table.get(op, {}).get(shape_key(shape), DEFAULT)


def index(op, algo, shape, precision="fp32"):
    """The kernel's index of algorithm `algo` for `op` on `shape` (None: choose for
    `precision`), or ValueError saying why it cannot run there or computes in another
    precision."""
    precisions.check(op, precision)
    names = names_of_algorithms()
    name = choose(op, shape, precision) if algo is None else algo
    if name not in names:
        raise ValueError(f"{op}: unknown algo {name!r}; convnet._C has {', '.join(names)}")
    if precision_of(name) != precision:
        raise ValueError(f"{op}: algo {name} computes in {precision_of(name)}, not "
                         f"precision={precision}")
    i = names.index(name)
    why = _C.conv_algo_unsupported(op, i, *shape)
    if why:
        raise ValueError(f"{op}: algo {name}: {why}")
    return i


def supported(op, shape):
    """The algorithms `op` can run on ConvShape tuple `shape`, in the kernels' order."""
    return [name for i, name in enumerate(names_of_algorithms())
            if not _C.conv_algo_unsupported(op, i, *shape)]
