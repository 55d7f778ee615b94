"""convnet/backend/contract.py against what it describes: OPS.md, both backends' functions, the
kernels' algorithms, and the benchmarks' shape rules."""
import inspect
import re
from pathlib import Path

import pytest

import convnet
from convnet.backend import algos, contract, numpy_backend

ROOT = Path(__file__).resolve().parent.parent
OPS_MD = (ROOT / "convnet" / "backend" / "OPS.md").read_text()
EXTRA_CUDA_PARAMS = ("out", "algo")  # the cuda backend's additions (cuda_conv, cuda_ops)


def parameters(fn):
    """'name' or 'name=default' per parameter, as the contract writes them."""
    return tuple(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                 for p in inspect.signature(fn).parameters.values())


# calls in OPS.md's formulas that are not ops
MATH = {"ceil", "clip", "floor", "log", "logistic", "max", "min", "philox", "sqrt", "sum",
        "tanh", "window", "conv_output_size", "pool_output_size"}


def test_ops_md_names_every_op_of_the_contract_and_no_other():
    named = set()
    for line in OPS_MD.splitlines():
        if line.startswith("    "):  # the indented signature blocks
            named |= set(re.findall(r"\b([a-z][a-z0-9_]*)\(", line))
    assert named - MATH == set(contract.OPS), (named - MATH) ^ set(contract.OPS)


@pytest.mark.parametrize("name", sorted(contract.OPS))
def test_ops_md_writes_each_call_as_the_contract_does(name):
    op = contract.OPS[name]
    assert f"{name}({', '.join(op.args)})" in OPS_MD, op.signature


@pytest.mark.parametrize("name", sorted(contract.OPS))
def test_the_numpy_backend_has_each_op_with_the_contract_arguments(name):
    assert parameters(getattr(numpy_backend, name)) == contract.OPS[name].args


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(contract.OPS))
def test_the_cuda_backend_has_each_op_with_the_contract_arguments(name):
    if not convnet.cuda_available():
        pytest.skip("needs a GPU (or the emulated one), CuPy and convnet._C built with CUDA")
    from convnet.backend import cuda_backend
    params = parameters(getattr(cuda_backend, name))
    extra = params[len(contract.OPS[name].args):]
    assert params[:len(contract.OPS[name].args)] == contract.OPS[name].args
    assert all(p.split("=")[0] in EXTRA_CUDA_PARAMS for p in extra), extra


def test_the_kernels_offer_each_op_exactly_its_contract_algorithms():
    """On a shape where every algorithm's shape rule holds (stride 1, 3x3, small), the kernels
    accept exactly the contract's algorithms for each op."""
    names = algos.names_of_algorithms()
    if not names:
        pytest.skip("convnet._C is not built")
    probe = (2, 4, 8, 8, 6, 3, 8, 8, 1, 1, 2)
    with_algorithms = {n: op for n, op in contract.OPS.items() if op.algorithms}
    assert set(with_algorithms) == set(algos.OPS)
    for name, op in with_algorithms.items():
        if names and "without CUDA" in (algos._C.conv_algo_unsupported(name, 1, *probe) or ""):
            pytest.skip("convnet._C was built without CUDA")
        assert tuple(algos.supported(name, probe)) == op.algorithms, name
    assert set(names) == {a for op in with_algorithms.values() for a in op.algorithms}


@pytest.mark.parametrize("img, fs, stride, padding", [(227, 11, 4, 0), (27, 5, 1, 2),
                                                      (13, 3, 1, 1), (7, 3, 2, 0), (8, 3, 3, 1)])
def test_conv_output_size_is_cuda_convnets_ceil(img, fs, stride, padding):
    import math
    assert contract.conv_output_size(img, fs, stride, padding) == \
        1 + math.ceil((2 * padding + img - fs) / stride)


def test_one_definition_of_each_shape_rule():
    from test_bench_report import workloads
    from convnet.backend import numpy_conv, numpy_pool
    assert numpy_conv.conv_output_size is contract.conv_output_size
    assert numpy_pool.pool_output_size is contract.pool_output_size
    assert workloads.conv_output_size is contract.conv_output_size
    assert workloads.pool_output_size is contract.pool_output_size
