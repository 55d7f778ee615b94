"""conv_forward_bias_relu: conv, bias and ReLU in one op (the cuda backend fuses the bias and the
ReLU into the GEMM's epilogue), on the NumPy backend and on the cuda backend (a GPU or the CPU
emulator), and the conv layer that uses it."""

import numpy as np
import pytest

from convnet.backend import numpy_conv
from opcheck import CUDA, cuda_test, cupy
from test_conv import CASES, random_inputs

if CUDA:
    from convnet.backend import algos, cuda_conv, cuda_ops


def bias_for(rng, x, w, case):
    """A bias that centres each filter's outputs on 0 (its median, moved a little), so that the
    ReLU cuts some of them and keeps others whatever the draw."""
    y = numpy_conv.conv_forward(x, w, case.stride, case.padding, case.groups)
    median = np.median(y.transpose(1, 0, 2, 3).reshape(case.f, -1), axis=1)
    spread = np.abs(y).max() * 1e-3
    return (-median + spread * rng.uniform(-1, 1, case.f)).astype(np.float32)


@pytest.mark.parametrize("case", CASES[:9])
def test_numpy_fused_op_is_conv_bias_then_relu(case, rng):
    x, w, _ = random_inputs(rng, case, False)
    b = bias_for(rng, x, w, case)
    geometry = (case.stride, case.padding, case.groups)
    got = numpy_conv.conv_forward_bias_relu(x, w, b, *geometry)
    want = np.maximum(numpy_conv.bias_forward(numpy_conv.conv_forward(x, w, *geometry), b), 0)
    np.testing.assert_array_equal(got, want)
    assert (got == 0).any() and (got > 0).any()  # the ReLU cut somewhere, not everywhere
    with pytest.raises(ValueError, match=r"conv_forward_bias_relu: b has shape"):
        numpy_conv.conv_forward_bias_relu(x, w, b[:-1], *geometry)


def unfused(x, w, b, geometry, algo, precision="fp32"):
    y = cuda_conv.conv_forward(x, w, *geometry, precision, algo=algo)
    return cuda_ops.neuron_forward(cuda_ops.bias_forward(y, b), "relu")


@cuda_test
@pytest.mark.parametrize("algo, precision", [("gemm", "fp32"), ("mma_tf32", "tf32"),
                                             ("mma_bf16", "bf16"), ("winograd2", "fp32")])
@pytest.mark.parametrize("case", CASES)
def test_cuda_fused_op_equals_its_three_ops(case, algo, precision, rng):
    shape = (case.n, case.c, case.h, case.w, case.f, case.fs, *case.out_size(), case.stride,
             case.padding, case.groups)
    if algo not in algos.supported("conv_forward", shape):
        pytest.skip(f"{algo} cannot run this shape")
    x, w, _ = random_inputs(rng, case, False)
    b = cupy.asarray(bias_for(rng, x, w, case))
    x, w = cupy.asarray(x), cupy.asarray(w)
    geometry = (case.stride, case.padding, case.groups)
    out = cupy.full((case.n, case.f, *case.out_size()), np.nan, dtype=cupy.float32)
    got = cuda_conv.conv_forward_bias_relu(x, w, b, *geometry, precision, out=out, algo=algo)
    assert got is out
    # the same products, then the same single rounding of + b: equal to the bit
    np.testing.assert_array_equal(cupy.asnumpy(got),
                                  cupy.asnumpy(unfused(x, w, b, geometry, algo, precision)))


@cuda_test
@pytest.mark.parametrize("algo, launches", [("gemm", 1), ("mma_tf32", 1), ("winograd2", None)])
def test_cuda_fused_op_is_one_launch_on_gemm_and_mma(algo, launches, rng, emulator_controls):
    controls = emulator_controls
    x = cupy.asarray(rng.standard_normal((2, 3, 6, 6), dtype=np.float32))
    w = cupy.asarray(rng.standard_normal((4, 3, 3, 3), dtype=np.float32))
    b = cupy.asarray(rng.standard_normal(4, dtype=np.float32))
    precision = algos.precision_of(algo)
    before = controls.launches()
    cuda_conv.conv_forward_bias_relu(x, w, b, 1, 1, 1, precision, algo=algo)
    ran = controls.launches() - before
    assert ran == launches if launches else ran > 3  # Winograd's passes, then bias, then ReLU


def test_conv_layer_with_relu_runs_the_fused_op_and_its_gradients_hold(rng, monkeypatch):
    from convnet.engine.gradcheck import check_net_grads
    from convnet.engine.net import Net
    from test_net import batch, small_specs

    specs = small_specs()
    specs[2]["neuron"] = "relu"
    net = Net(specs, dtype=np.float64, seed=3)
    calls = []
    fused = net.B.conv_forward_bias_relu
    monkeypatch.setattr(net.B, "conv_forward_bias_relu",
                        lambda *a, **k: calls.append(1) or fused(*a, **k))
    data = batch(rng)
    net.forward(data, train=True, step=0)
    assert calls == [1]
    for name, worst, checked in check_net_grads(net, data, rng):
        assert checked > 0 and worst < 1e-5, (name, worst)
