"""conv and local (fc and bias: tests/test_fc.py): one case list on the NumPy backend
(numpy_conv against numpy_direct's definitions and float64 gradients) and on the cuda backend
(csrc/conv.cu, csrc/local.cu through cuda_conv against the reference, on a GPU or the CPU
emulator; tests/opcheck.py says how). The cuda backend's algorithms, AlexNet's and the small nets'
layers and its argument checks: tests/test_conv_cuda.py.

cuda bound: every output poisoned with NaN through out=; the relative error
max|got - ref| / max|ref| < 1e-3, fp32 kernels against a float64 reference computed from the
same float32 inputs (a float32 reference for the AlexNet-size cases, whose float64 reference is
too slow on a CPU; its own error is ~1e-6, far below the bound).
"""
from typing import NamedTuple

import numpy as np
import pytest

from convnet.backend import numpy_conv
from convnet.backend.numpy_conv import (
    bias_backward, bias_forward, conv_backward_data, conv_backward_filter, conv_forward,
    conv_output_size, fc_backward_data, fc_backward_filter, fc_forward, local_backward_data,
    local_backward_filter, local_forward)
from convnet.backend.numpy_direct import conv_forward_direct, local_forward_direct
from gradcheck import check_op_grads
from opcheck import CUDA, cupy, memory_orders, on_backends, relative_error

if CUDA:
    from convnet.backend import cuda_conv


class Case(NamedTuple):
    n: int
    c: int
    h: int
    w: int
    f: int
    fs: int
    stride: int
    padding: int
    groups: int

    def out_size(self):
        return (conv_output_size(self.h, self.fs, self.stride, self.padding),
                conv_output_size(self.w, self.fs, self.stride, self.padding))


def named(case):
    c = case
    return f"n{c[0]}c{c[1]}h{c[2]}w{c[3]}f{c[4]}k{c[5]}s{c[6]}p{c[7]}g{c[8]}"


# One list for conv and local, both backends: the reference's shapes, then shapes that miss every
# tile boundary of the kernels and exercise every edge rule.
CONV_CASES = [
    Case(1, 1, 5, 5, 1, 3, 1, 0, 1),      # batch 1, single channel
    Case(2, 3, 7, 5, 4, 3, 1, 1, 1),      # rectangular, padding
    Case(3, 4, 6, 6, 6, 3, 2, 1, 2),      # groups=2, stride 2
    Case(2, 2, 8, 8, 3, 3, 2, 0, 1),      # ceil: the last window runs past the bottom/right edge
    Case(1, 3, 23, 19, 2, 11, 4, 0, 1),   # 11x11 at stride 4 (conv1's geometry), rectangular
    Case(2, 6, 5, 9, 4, 5, 1, 2, 2),      # 5x5 pad 2 groups 2
    Case(1, 5, 4, 4, 3, 1, 1, 0, 1),      # 1x1 filters
    Case(2, 2, 4, 3, 2, 5, 3, 2, 2),      # filter larger than the image, only the padding makes room
]
CASE_IDS = [named(c) for c in CONV_CASES]
AWKWARD = {
    "batch1": Case(1, 3, 7, 7, 4, 3, 1, 1, 1),
    "batch129": Case(129, 3, 9, 9, 8, 3, 1, 1, 1),
    "odd_rectangular": Case(3, 5, 13, 9, 7, 3, 2, 1, 1),
    "channels3_11x11_stride4_ceil": Case(2, 3, 37, 31, 16, 11, 4, 0, 1),
    "channels17": Case(4, 17, 11, 10, 33, 3, 1, 1, 1),
    "groups2_5x5": Case(3, 6, 10, 12, 10, 5, 1, 2, 2),
    "groups4": Case(2, 8, 7, 7, 12, 3, 1, 1, 4),
    "padding0": Case(2, 4, 8, 9, 6, 3, 1, 0, 1),
    "padding1": Case(2, 4, 8, 9, 6, 3, 1, 1, 1),
    "padding2": Case(2, 4, 8, 9, 6, 3, 2, 2, 1),
    "padding3": Case(2, 4, 8, 9, 6, 4, 1, 3, 1),
    "last_window_past_edge": Case(2, 3, 13, 11, 5, 5, 3, 0, 1),
    "stride_above_filter": Case(2, 2, 11, 10, 3, 2, 3, 1, 1),
    "filters_65_per_group": Case(2, 6, 6, 6, 130, 3, 1, 1, 2),
    "filters_200_1x1": Case(2, 4, 6, 7, 200, 1, 1, 0, 1),
    "filter_covers_image": Case(2, 3, 5, 5, 4, 5, 1, 0, 1),
}
CASES = ([pytest.param(c, id=i) for c, i in zip(CONV_CASES, CASE_IDS)]
         + [pytest.param(c, id=name) for name, c in sorted(AWKWARD.items())])
PASSES = ("forward", "backward_data", "backward_filter")


def conv_inputs(rng, case):
    n, channels, height, width, filters, fs, stride, padding, groups = case
    x = rng.standard_normal((n, channels, height, width))
    w = rng.standard_normal((filters, channels // groups, fs, fs))
    return x, w, stride, padding, groups


def local_weights(rng, case):
    n, channels, height, width, filters, fs, stride, padding, groups = case
    out_h = conv_output_size(height, fs, stride, padding)
    out_w = conv_output_size(width, fs, stride, padding)
    return rng.standard_normal((out_h, out_w, filters, channels // groups, fs, fs))


# ---------------------------------------------------------------------------------------------
# the case list on both backends


def random_inputs(rng, case, local):
    """x, w, dy as float32 NumPy arrays (standard normal: never zeros, never all equal)."""
    out_h, out_w = case.out_size()
    group_channels = case.c // case.groups
    w_shape = ((out_h, out_w, case.f, group_channels, case.fs, case.fs) if local
               else (case.f, group_channels, case.fs, case.fs))
    x = rng.standard_normal((case.n, case.c, case.h, case.w), dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    dy = rng.standard_normal((case.n, case.f, out_h, out_w), dtype=np.float32)
    return x, w, dy


def op_arguments(case, pass_, x, w, dy):
    """The array arguments and the size argument of one pass (the OPS.md signatures)."""
    if pass_ == "forward":
        return (x, w), ()
    if pass_ == "backward_data":
        return (dy, w), ((case.h, case.w),)
    return (x, dy), (case.fs,)


REL_TOL = 1e-3


def check_against_reference(rng, kind, pass_, case, ref_dtype=np.float64, algo=None):
    """Run kind_pass (kind: conv or local) on the GPU into a NaN-poisoned `out` and compare."""
    name = f"{kind}_{pass_}"
    arrays, size_arg = op_arguments(case, pass_, *random_inputs(rng, case, kind == "local"))
    geometry = (case.stride, case.padding, case.groups)
    want = getattr(numpy_conv, name)(*(a.astype(ref_dtype) for a in arrays), *size_arg, *geometry)
    out = cupy.full(want.shape, np.nan, dtype=cupy.float32)
    got = getattr(cuda_conv, name)(*(cupy.asarray(a) for a in arrays), *size_arg, *geometry,
                                   out=out, algo=algo)
    assert got is out
    got = cupy.asnumpy(got)
    unwritten = int(np.isnan(got).sum())
    assert unwritten == 0, f"{name} {case}: {unwritten} of {got.size} outputs never written"
    err = relative_error(got, want)
    assert err < REL_TOL, f"{name} {case}: relative error {err:.3g}"


DIRECT = {"conv": conv_forward_direct, "local": local_forward_direct}


def check_reference(rng, kind, pass_, case):
    """forward: equal to the direct definition; backward_data, backward_filter: the float64
    gradient check of the forward pass with respect to x, w."""
    x, w, stride, padding, groups = conv_inputs(rng, case)
    if kind == "local":
        w = local_weights(rng, case)
    geometry = (stride, padding, groups)
    forward = getattr(numpy_conv, f"{kind}_forward")
    if pass_ == "forward":
        np.testing.assert_allclose(forward(x, w, *geometry), DIRECT[kind](x, w, *geometry),
                                   rtol=1e-12, atol=1e-12)
    # The ops are linear in x and in w, so a central difference is exact but for rounding, which
    # on the larger awkward shapes reaches 1e-5 of the gradient (seen: channels17, local).
    elif pass_ == "backward_data":
        check_op_grads(lambda x, w: forward(x, w, *geometry), lambda dy: [getattr(
            numpy_conv, f"{kind}_backward_data")(dy, w, x.shape[2:], *geometry), None], [x, w], rng,
            rtol=1e-4)
    else:
        check_op_grads(lambda x, w: forward(x, w, *geometry), lambda dy: [None, getattr(
            numpy_conv, f"{kind}_backward_filter")(x, dy, case.fs, *geometry)], [x, w], rng,
            rtol=1e-4)


CHECKS = {"numpy": check_reference, "cuda": check_against_reference}


@pytest.mark.parametrize("pass_", PASSES)
@on_backends(CASES)
def test_conv_passes(backend, case, pass_, rng):
    CHECKS[backend](rng, "conv", pass_, case)


@pytest.mark.parametrize("pass_", PASSES)
@on_backends(CASES)
def test_local_passes(backend, case, pass_, rng):
    CHECKS[backend](rng, "local", pass_, case)


# ---------------------------------------------------------------------------------------------
# sizes


@pytest.mark.parametrize("img, fs, stride, padding, expected", [
    (224, 11, 4, 0, 55),   # the paper's 224 input: 1 + ceil(213 / 4), the last window runs past
    (227, 11, 4, 0, 55),   # 1 + 216 / 4 exactly
    (27, 5, 1, 2, 27),
    (13, 3, 1, 1, 13),
    (28, 5, 1, 2, 28),
    (8, 3, 2, 0, 4),       # 1 + ceil(5 / 2)
    (5, 5, 1, 0, 1),
])
def test_conv_output_size_cuda_convnet_cases(img, fs, stride, padding, expected):
    assert conv_output_size(img, fs, stride, padding) == expected


def test_conv_forward_output_shape_of_alexnet_conv1(rng):
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    w = rng.standard_normal((2, 3, 11, 11)).astype(np.float32)
    assert conv_forward(x, w, 4, 0, 1).shape == (1, 2, 55, 55)


# ---------------------------------------------------------------------------------------------
# forward values


def test_conv_forward_random_shapes_match_direct_definition(rng):
    for _ in range(4):
        groups = int(rng.integers(1, 3))
        fs = int(rng.integers(1, 6))
        padding = int(rng.integers(0, 3))
        height, width = (int(v) for v in rng.integers(max(1, fs - 2 * padding), 10, size=2))
        case = (int(rng.integers(1, 4)), groups * int(rng.integers(1, 4)), height, width,
                groups * int(rng.integers(1, 4)), fs, int(rng.integers(1, 4)), padding, groups)
        x, w, stride, padding, groups = conv_inputs(rng, case)
        np.testing.assert_allclose(conv_forward(x, w, stride, padding, groups),
                                   conv_forward_direct(x, w, stride, padding, groups),
                                   rtol=1e-12, atol=1e-12, err_msg=str(case))


def test_conv_forward_window_past_the_edge_reads_zeros():
    # 5x5 of ones, 2x2 filters at stride 2: 1 + ceil(3 / 2) = 3 outputs; the last window covers
    # rows/cols 4..5 and only pixel 4 exists.
    x = np.ones((1, 1, 5, 5))
    w = np.array([[[[1.0, 2.0], [4.0, 8.0]]]])
    y = conv_forward(x, w, 2, 0, 1)
    expected = np.array([[15.0, 15.0, 5.0],
                         [15.0, 15.0, 5.0],
                         [3.0, 3.0, 1.0]])
    np.testing.assert_array_equal(y[0, 0], expected)


def test_conv_forward_padding_hand_case():
    # 2x2 image, 3x3 filter of ones, padding 1: each output sums the image pixels in reach.
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = conv_forward(x, np.ones((1, 1, 3, 3)), 1, 1, 1)
    np.testing.assert_array_equal(y[0, 0], [[10.0, 10.0], [10.0, 10.0]])
    y = conv_forward(x, np.ones((1, 1, 3, 3)), 2, 1, 1)   # 1 + ceil(1 / 2) = 2 outputs
    np.testing.assert_array_equal(y[0, 0], [[10.0, 6.0], [7.0, 4.0]])


def test_conv_forward_groups2_equals_two_separate_convs(rng):
    x = rng.standard_normal((3, 6, 9, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    y = conv_forward(x, w, 2, 1, 2)
    first = conv_forward(x[:, :3], w[:2], 2, 1, 1)
    second = conv_forward(x[:, 3:], w[2:], 2, 1, 1)
    np.testing.assert_allclose(y, np.concatenate([first, second], axis=1), rtol=1e-13, atol=1e-13)


def test_conv_backward_groups2_equal_two_separate_convs(rng):
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 3))
    dy = rng.standard_normal(conv_forward(x, w, 1, 1, 2).shape)
    dx = conv_backward_data(dy, w, (7, 6), 1, 1, 2)
    dw = conv_backward_filter(x, dy, 3, 1, 1, 2)
    for g in range(2):
        channels, filters = slice(2 * g, 2 * g + 2), slice(3 * g, 3 * g + 3)
        np.testing.assert_allclose(dx[:, channels],
                                   conv_backward_data(dy[:, filters], w[filters], (7, 6), 1, 1, 1),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dw[filters],
                                   conv_backward_filter(x[:, channels], dy[:, filters], 3, 1, 1, 1),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [CONV_CASES[2], CONV_CASES[3], CONV_CASES[5]],
                         ids=[CASE_IDS[2], CASE_IDS[3], CASE_IDS[5]])
def test_local_with_equal_filters_everywhere_equals_conv(rng, case):
    x, w, stride, padding, groups = conv_inputs(rng, case)
    out_h, out_w = (conv_output_size(s, w.shape[2], stride, padding) for s in x.shape[2:])
    w_local = np.broadcast_to(w, (out_h, out_w, *w.shape)).copy()
    y = conv_forward(x, w, stride, padding, groups)
    np.testing.assert_allclose(local_forward(x, w_local, stride, padding, groups), y,
                               rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        local_backward_data(dy, w_local, x.shape[2:], stride, padding, groups),
        conv_backward_data(dy, w, x.shape[2:], stride, padding, groups), rtol=1e-12, atol=1e-12)
    # a shared filter's gradient is the sum of the per-position gradients
    dw_local = local_backward_filter(x, dy, w.shape[2], stride, padding, groups)
    np.testing.assert_allclose(dw_local.sum(axis=(0, 1)),
                               conv_backward_filter(x, dy, w.shape[2], stride, padding, groups),
                               rtol=1e-11, atol=1e-11)


def test_conv_and_local_row_bands_change_nothing(rng, monkeypatch):
    """The ops work on bands of output rows sized by WORKING_SET_BYTES; one row per band must
    give the same results as all rows at once."""
    x, w, stride, padding, groups = conv_inputs(rng, (5, 4, 7, 6, 6, 3, 2, 1, 2))
    w_local = local_weights(rng, (5, 4, 7, 6, 6, 3, 2, 1, 2))
    dy = rng.standard_normal(conv_forward(x, w, stride, padding, groups).shape)
    size = x.shape[2:]

    def everything():
        return [conv_forward(x, w, stride, padding, groups),
                conv_backward_data(dy, w, size, stride, padding, groups),
                conv_backward_filter(x, dy, 3, stride, padding, groups),
                local_forward(x, w_local, stride, padding, groups),
                local_backward_data(dy, w_local, size, stride, padding, groups),
                local_backward_filter(x, dy, 3, stride, padding, groups)]

    whole = everything()
    monkeypatch.setattr(numpy_conv, "WORKING_SET_BYTES", 1)
    assert len(numpy_conv._row_bands(5, 10, 2, (4, 3), 8)) == 4
    for sliced, ref in zip(everything(), whole):
        np.testing.assert_allclose(sliced, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_conv_and_local_give_the_same_results_for_every_memory_order(rng, case):
    """Results are NCHW views of (C, H, W, N) memory, and callers pass them on: x and dy in any
    memory order give exactly the results of C-contiguous arrays."""
    x, w, stride, padding, groups = conv_inputs(rng, case)
    w_local = local_weights(rng, case)
    y = conv_forward(x, w, stride, padding, groups)
    assert y.transpose(1, 2, 3, 0).flags.c_contiguous
    dy = rng.standard_normal(y.shape)
    size, fs = x.shape[2:], w.shape[2]

    def everything(x, dy):
        return [conv_forward(x, w, stride, padding, groups),
                conv_backward_data(dy, w, size, stride, padding, groups),
                conv_backward_filter(x, dy, fs, stride, padding, groups),
                local_forward(x, w_local, stride, padding, groups),
                local_backward_data(dy, w_local, size, stride, padding, groups),
                local_backward_filter(x, dy, fs, stride, padding, groups)]

    whole = everything(x, dy)
    for x_order in memory_orders(x).values():
        for dy_order in memory_orders(dy).values():
            for result, ref in zip(everything(x_order, dy_order), whole):
                np.testing.assert_array_equal(result, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_local_fc_bias_keep_dtype(rng, dtype):
    x = rng.standard_normal((2, 4, 6, 5)).astype(dtype)
    w = rng.standard_normal((4, 2, 3, 3)).astype(dtype)
    y = conv_forward(x, w, 1, 1, 2)
    dy = rng.standard_normal(y.shape).astype(dtype)
    w_local = rng.standard_normal((*y.shape[2:], 4, 2, 3, 3)).astype(dtype)
    outs = [y, conv_backward_data(dy, w, (6, 5), 1, 1, 2), conv_backward_filter(x, dy, 3, 1, 1, 2),
            local_forward(x, w_local, 1, 1, 2), local_backward_data(dy, w_local, (6, 5), 1, 1, 2),
            local_backward_filter(x, dy, 3, 1, 1, 2),
            bias_forward(y, np.ones(4, dtype)), bias_backward(dy, 1)]
    xf, wf = x.reshape(2, -1), rng.standard_normal((120, 3)).astype(dtype)
    dyf = fc_forward(xf, wf)
    outs += [dyf, fc_backward_data(dyf, wf), fc_backward_filter(xf, dyf)]
    assert [o.dtype for o in outs] == [np.dtype(dtype)] * len(outs)


def test_conv_float32_close_to_float64(rng):
    x, w, stride, padding, groups = conv_inputs(rng, (4, 6, 11, 9, 8, 5, 2, 2, 2))
    y64 = conv_forward(x, w, stride, padding, groups)
    y32 = conv_forward(x.astype(np.float32), w.astype(np.float32), stride, padding, groups)
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# bad arguments


def test_conv_rejects_channels_not_divisible_by_groups(rng):
    x = rng.standard_normal((1, 3, 5, 5))
    with pytest.raises(ValueError, match="conv_forward.*groups=2"):
        conv_forward(x, rng.standard_normal((2, 1, 3, 3)), 1, 0, 2)
    with pytest.raises(ValueError, match="conv_backward_filter.*groups=2"):
        conv_backward_filter(x, rng.standard_normal((1, 2, 3, 3)), 3, 1, 0, 2)
    with pytest.raises(ValueError, match="local_forward.*groups=2"):
        local_forward(x, rng.standard_normal((3, 3, 2, 1, 3, 3)), 1, 0, 2)


def test_conv_rejects_filters_not_divisible_by_groups(rng):
    with pytest.raises(ValueError, match="conv_forward.*3 filters.*groups=2"):
        conv_forward(rng.standard_normal((1, 4, 5, 5)), rng.standard_normal((3, 2, 3, 3)), 1, 0, 2)


def test_conv_rejects_filter_larger_than_padded_image(rng):
    x = rng.standard_normal((1, 2, 5, 7))
    with pytest.raises(ValueError, match="conv_forward.*filter_size 8"):
        conv_forward(x, rng.standard_normal((2, 2, 8, 8)), 1, 1, 1)
    with pytest.raises(ValueError, match="conv_backward_data.*filter_size 8"):
        conv_backward_data(rng.standard_normal((1, 2, 1, 1)), rng.standard_normal((2, 2, 8, 8)),
                           (5, 7), 1, 1, 1)
    with pytest.raises(ValueError, match="local_backward_filter.*filter_size 6"):
        local_backward_filter(x, rng.standard_normal((1, 2, 1, 2)), 6, 1, 0, 1)


def test_conv_rejects_wrong_weight_shapes(rng):
    x = rng.standard_normal((2, 4, 6, 6))
    with pytest.raises(ValueError, match=r"conv_forward: w has shape \(4, 4, 3, 3\)"):
        conv_forward(x, rng.standard_normal((4, 4, 3, 3)), 1, 0, 2)   # C // groups is 2
    with pytest.raises(ValueError, match="conv_forward: w has shape"):
        conv_forward(x, rng.standard_normal((3, 4, 3, 2)), 1, 0, 1)   # not square
    with pytest.raises(ValueError, match="conv_forward: w must be 4-D"):
        conv_forward(x, rng.standard_normal((3, 4, 3)), 1, 0, 1)
    with pytest.raises(ValueError, match="local_forward: w has shape"):
        local_forward(x, rng.standard_normal((3, 4, 2, 4, 3, 3)), 1, 0, 1)  # output is 4x4
    with pytest.raises(ValueError, match="conv_backward_data: dy has shape"):
        conv_backward_data(rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((3, 4, 3, 3)),
                           (6, 6), 1, 0, 1)
    with pytest.raises(ValueError, match="fc_forward"):
        fc_forward(rng.standard_normal((2, 5)), rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match="fc_backward_filter"):
        fc_backward_filter(rng.standard_normal((2, 5)), rng.standard_normal((3, 3)))


def test_conv_rejects_bad_stride_padding_and_bias(rng):
    x, w = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((2, 2, 3, 3))
    with pytest.raises(ValueError, match="conv_forward: stride"):
        conv_forward(x, w, 0, 0, 1)
    with pytest.raises(ValueError, match="conv_forward: padding"):
        conv_forward(x, w, 1, -1, 1)
    with pytest.raises(ValueError, match="bias_forward"):
        bias_forward(rng.standard_normal((2, 3, 4, 4)), rng.standard_normal(4))
    with pytest.raises(ValueError, match="bias_backward"):
        bias_backward(rng.standard_normal((2, 3)), 2)
