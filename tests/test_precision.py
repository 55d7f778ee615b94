"""The precisions of conv and local (convnet/backend/precision.py): the rounding functions against
an independent float64 definition, the NumPy reference at each precision against the exact result,
and the cuda backend's tensor-core kernels (csrc/conv_mma.cuh, on a GPU or the CPU emulator)
against the reference at the same precision, on test_conv's case list.

cuda bound: the kernels and the reference round the same operands, so they differ only by the
order of their FP32 sums: tolerance("fp32", reduction). A kernel that did not round (or rounded
otherwise: truncated TF32, say) would sit as far from the rounded reference as from the exact
result, and the test asks that it be ten times closer to the rounded one.
"""
import math

import numpy as np
import pytest

from convnet.backend import numpy_conv
from convnet.backend.precision import PRECISIONS, operands, round_bf16, round_tf32, tolerance
from opcheck import CUDA, cuda_test, cupy, relative_error
from test_conv import CASES, PASSES, op_arguments, random_inputs

if CUDA:
    from convnet.backend import algos, cuda_conv

MANTISSA = {"tf32": 10, "bf16": 7}


def rounded_by_definition(x, bits, ties_away):
    """float x rounded to `bits` mantissa bits, in float64 arithmetic (normal numbers only)."""
    if x == 0 or not math.isfinite(x):
        return x
    m, e = math.frexp(x)                      # x = m 2^e, 0.5 <= |m| < 1
    scaled = m * 2.0 ** (bits + 1)            # the kept bits left of the point
    if ties_away:
        r = math.copysign(math.floor(abs(scaled) + 0.5), scaled)
    else:
        r = float(round(scaled))              # Python rounds half to even
    return math.ldexp(r, e - bits - 1)


@pytest.mark.parametrize("precision, fn, ties_away", [("tf32", round_tf32, True),
                                                      ("bf16", round_bf16, False)])
def test_rounding_matches_its_definition_on_random_floats(precision, fn, ties_away, rng):
    exponents = rng.integers(-100, 100, 4000)
    x = (rng.standard_normal(4000) * 2.0 ** exponents).astype(np.float32)
    # plus exact ties: a kept mantissa (odd or even) with one half unit added
    kept = rng.integers(2 ** MANTISSA[precision], 2 ** (MANTISSA[precision] + 1), 200)
    ties = np.ldexp(kept + 0.5, -MANTISSA[precision]).astype(np.float32) * rng.choice([-1, 1], 200)
    x = np.concatenate([x, ties.astype(np.float32)])
    got = fn(x)
    want = np.array([rounded_by_definition(float(v), MANTISSA[precision], ties_away) for v in x])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.astype(np.float64), want)


def test_rounding_ties_go_away_for_tf32_and_to_even_for_bf16():
    one_and_half_ulp = {"tf32": 1 + 2.0 ** -11, "bf16": 1 + 2.0 ** -8}
    assert round_tf32(np.float32([one_and_half_ulp["tf32"], -one_and_half_ulp["tf32"]])).tolist() \
        == [1 + 2.0 ** -10, -(1 + 2.0 ** -10)]
    assert round_bf16(np.float32([one_and_half_ulp["bf16"], 1 + 3 * 2.0 ** -8])).tolist() \
        == [1.0, 1 + 2.0 ** -6]


@pytest.mark.parametrize("fn", [round_tf32, round_bf16])
def test_rounding_keeps_inf_nan_and_zero_and_keeps_the_memory_order(fn):
    x = np.float32([np.inf, -np.inf, np.nan, 0.0, -0.0])
    got = fn(x)
    assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2])
    assert got[3] == 0 and not np.signbit(got[3]) and np.signbit(got[4])
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4).transpose(2, 0, 1)
    np.testing.assert_array_equal(fn(a), a)   # small integers are exact in both
    assert fn(a).strides == a.strides or fn(a).flags.c_contiguous


def test_operands_check_the_precision_and_the_dtype():
    x = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="conv_forward: precision must be one of fp32, tf32, bf16"):
        operands("conv_forward", "fp16", x)
    with pytest.raises(ValueError, match="conv_forward: precision=tf32 rounds float32 operands; "
                                         "got float64"):
        operands("conv_forward", "tf32", x.astype(np.float64))
    assert operands("conv_forward", "fp32", x)[0] is x


REDUCTION = {  # the products each output sums, by pass
    "forward": lambda c: c.c // c.groups * c.fs ** 2,
    "backward_data": lambda c: c.f // c.groups * c.fs ** 2,
    "backward_filter": lambda c: c.n * math.prod(c.out_size()),
}


def reference(kind, pass_, case, arrays, size_arg, precision, dtype=np.float32):
    """The reference at `precision` (float32), or its operands rounded so and summed in
    `dtype` (float64: the exact result of the rounded operands)."""
    fn = getattr(numpy_conv, f"{kind}_{pass_}")
    geometry = (case.stride, case.padding, case.groups)
    if dtype == np.float32:
        return fn(*arrays, *size_arg, *geometry, precision=precision)
    rounded = operands(fn.__name__, precision, *arrays)
    return fn(*(a.astype(dtype) for a in rounded), *size_arg, *geometry)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("kind", ["conv", "local"])
@pytest.mark.parametrize("case", CASES[:9])
def test_reference_precision_errs_within_its_bound_and_beyond_fp32(kind, pass_, case, precision,
                                                                   rng):
    arrays, size_arg = op_arguments(case, pass_, *random_inputs(rng, case, kind == "local"))
    exact = reference(kind, pass_, case, arrays, size_arg, "fp32", np.float64)
    err = relative_error(reference(kind, pass_, case, arrays, size_arg, precision), exact)
    fp32_err = relative_error(reference(kind, pass_, case, arrays, size_arg, "fp32"), exact)
    assert err < tolerance(precision, REDUCTION[pass_](case)), err
    assert err > 10 * fp32_err, (err, fp32_err)   # the operands really were rounded


# ---------------------------------------------------------------------------------------------
# the tensor-core kernels


@cuda_test
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("kind", ["conv", "local"])
@pytest.mark.parametrize("case", CASES)
def test_mma_kernels_match_the_reference_at_their_precision(kind, pass_, case, precision, rng):
    name = f"{kind}_{pass_}"
    arrays, size_arg = op_arguments(case, pass_, *random_inputs(rng, case, kind == "local"))
    want = reference(kind, pass_, case, arrays, size_arg, precision, np.float64)
    exact = reference(kind, pass_, case, arrays, size_arg, "fp32", np.float64)
    out = cupy.full(want.shape, np.nan, dtype=cupy.float32)
    got = getattr(cuda_conv, name)(*(cupy.asarray(a) for a in arrays), *size_arg, case.stride,
                                   case.padding, case.groups, precision=precision, out=out)
    got = cupy.asnumpy(got)
    assert not np.isnan(got).any(), f"{name}: {int(np.isnan(got).sum())} outputs never written"
    err = relative_error(got, want)
    assert err < tolerance("fp32", REDUCTION[pass_](case)), f"{name} {precision}: {err:.3g}"
    assert 10 * err < relative_error(got, exact), f"{name}: not rounded as {precision}"


@cuda_test
def test_precision_picks_its_algorithm_and_refuses_another():
    shape = (1, 3, 5, 5, 2, 3, 3, 3, 1, 0, 1)
    for precision in PRECISIONS:
        i = algos.index("conv_forward", None, shape, precision)
        assert algos.precision_of(algos.names_of_algorithms()[i]) == precision
    with pytest.raises(ValueError, match="conv_forward: algo gemm computes in fp32, not "
                                         "precision=tf32"):
        algos.index("conv_forward", "gemm", shape, "tf32")
    with pytest.raises(ValueError, match="precision must be one of"):
        algos.index("conv_forward", None, shape, "fp8")


@cuda_test
def test_mma_algorithms_are_refused_on_sm_75_with_a_message(emulator_controls):
    controls = emulator_controls
    x = cupy.ones((1, 3, 5, 5), cupy.float32)
    w = cupy.ones((2, 3, 3, 3), cupy.float32)
    controls.set_compute_capability(75)
    try:
        with pytest.raises(ValueError, match=r"conv_forward: the TF32 and BF16 tensor-core "
                                             r"kernels need sm_80 or newer \(this device: sm_75\)"):
            cuda_conv.conv_forward(x, w, 1, 0, 1, precision="tf32")
        cuda_conv.conv_forward(x, w, 1, 0, 1)  # fp32 still runs
    finally:
        controls.set_compute_capability(90)


# ---------------------------------------------------------------------------------------------
# the engine: --precision (Net's precision) and a layer's precision= key


def test_net_precision_rounds_the_conv_operands_and_a_layers_key_wins(rng):
    from convnet.engine.net import Net
    from test_net import batch, small_specs

    data = batch(rng)
    data[0] = data[0].astype(np.float32)
    specs = small_specs()
    specs[2]["precision"] = "bf16"                      # conv1's key beats the net's tf32
    rounded = Net(specs, seed=3, precision="tf32")
    assert rounded["conv1"].precision == "bf16"
    plain = Net(small_specs(), seed=3)
    assert plain["conv1"].precision == "fp32"
    w = plain.get_params()["conv1.w0"]
    plain.set_params({"conv1.w0": round_bf16(w)})
    want = plain.forward({0: round_bf16(data[0]), 1: data[1]}, train=False)["conv1"]
    got = rounded.forward(data, train=False)["conv1"]
    np.testing.assert_array_equal(got, want)           # the same rounded operands, the same sums
    assert not np.array_equal(got, Net(small_specs(), seed=3).forward(data, train=False)["conv1"])


def test_net_precision_errors_name_the_layer_and_key():
    from convnet.engine.config import ConfigError
    from convnet.engine.net import Net
    from test_net import small_specs

    with pytest.raises(ConfigError, match="precision=tf32 rounds float32 operands; this net is "
                                          "float64"):
        Net(small_specs(), dtype=np.float64, precision="tf32")
    specs = small_specs()
    specs[2]["precision"] = "fp16"
    with pytest.raises(ConfigError, match="conv1.*precision.*expected one of fp32, tf32, bf16"):
        Net(specs)
    with pytest.raises(ValueError, match="Net: precision must be one of"):
        Net(small_specs(), precision="half")
