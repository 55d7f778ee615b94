"""cuda-convnet2's layer ops on the CUDA backend (cuda_cc2.py -> convnet._C) against the NumPy
reference (numpy_cc2.py), on a GPU or on the CPU emulator (tools/kernel_emulator/run.py), with
test_cuda_ops.py's helpers: NaN-poisoned outputs (an unwritten element fails), inputs and outputs
off 16-byte alignment, batch 1 and 129, odd channel counts, rectangular maps; `big` cases are
skipped on the emulator. What only a GPU run shows is test_cuda_ops.py's list.

Bounds, float32 against the reference:
  cmpool, crop, sum_backward      equal to the float32 reference bit for bit (maxima, copies, and
                                  window sums added in the reference's order)
  sum_forward                     |err| <= 1e-5 |ref| + 1e-6 sum |terms|
  per-case costs (row sums)       |err| <= 1e-4 |ref| + 1e-5 sum |terms|
  element-wise gradients          |err| <= 1e-5 |ref| + 1e-6 (|first term| + |second term|)
                                  (softmax_crossent's row sum: 1e-5)
  wrong fractions                 |err| <= 1e-6 |ref| (ratios of small integers)
  detection counts                |err| <= 1e-5 |ref| (equal for binary labels)
"""
import numpy as np
import pytest

import convnet

pytestmark = pytest.mark.cuda

if not convnet.cuda_available():
    pytest.skip("needs a GPU, CuPy and convnet._C built with CUDA", allow_module_level=True)

import cupy  # noqa: E402

from convnet import _C  # noqa: E402
from convnet.backend import cuda_cc2 as cu  # noqa: E402
from convnet.backend import numpy_cc2 as ref  # noqa: E402
from convnet.backend.numpy_cost import softmax_forward  # noqa: E402
from opcheck import (assert_close, assert_equal, host, normal, poisoned,  # noqa: E402
                           to_device)


def f64(*arrays):
    return tuple(a.astype(np.float64) for a in arrays)


# ----------------------------------------------------------------------------------------------
# cmpool

CMPOOL_CASES = [  # shape, size, stride, start, outputs (None: cmpool_output_size)
    pytest.param((128, 96, 27, 27), 3, 2, 0, None, marks=pytest.mark.big),
    ((1, 5, 3, 4), 3, 2, 0, None),
    ((129, 7, 2, 3), 3, 2, -1, None),
    ((3, 6, 5, 1), 2, 2, 0, None),        # maxout over maps
    ((5, 12), 4, 4, 0, None),             # fc maxout
    ((2, 17, 3, 5), 5, 3, -2, 6),         # one output more than the fewest
    ((4, 4, 3, 2), 4, 1, -3, None),
]


@pytest.mark.parametrize("shape,size,stride,start,outputs", CMPOOL_CASES)
def test_cmpool_matches_reference(shape, size, stride, start, outputs, rng):
    outputs = outputs or ref.cmpool_output_size(shape[1], size, stride, start)
    x = normal(rng, shape)
    y_ref = ref.cmpool_forward(x, size, stride, start, outputs)
    dy = normal(rng, y_ref.shape)
    dx_ref = ref.cmpool_backward(x, y_ref, dy, size, stride, start)
    for misaligned in (False, True):
        y = cu.cmpool_forward(to_device(x, misaligned), size, stride, start, outputs,
                              out=poisoned(y_ref.shape, misaligned=misaligned))
        assert_equal(y, y_ref, f"cmpool_forward misaligned={misaligned}")
        dx = cu.cmpool_backward(to_device(x, misaligned), y, to_device(dy), size, stride, start,
                                out=poisoned(shape, misaligned=misaligned))
        assert_equal(dx, dx_ref, f"cmpool_backward misaligned={misaligned}")


def test_cmpool_backward_ties_and_every_window(rng):
    """Four values only: most windows hold several maxima; with size 3, stride 2 the channels
    at a window's end get both windows' gradients (cuda-convnet2 would miss window 0's)."""
    shape = (7, 9, 4, 3)
    x = rng.integers(0, 4, shape).astype(np.float32)
    outputs = ref.cmpool_output_size(9, 3, 2, 0)
    y = ref.cmpool_forward(x, 3, 2, 0, outputs)
    dy = normal(rng, y.shape)
    dx = cu.cmpool_backward(to_device(x), to_device(y), to_device(dy), 3, 2, 0,
                            out=poisoned(shape))
    assert_equal(dx, ref.cmpool_backward(x, y, dy, 3, 2, 0), "cmpool_backward with ties")


# ----------------------------------------------------------------------------------------------
# sum and crop

SUM_CASES = [pytest.param((128, 4096), 4, marks=pytest.mark.big), ((1, 3), 3), ((129, 12), 4),
             ((3, 10, 5, 7), 5), ((2, 9, 3), 1), ((4, 8, 2, 2), 8)]


@pytest.mark.parametrize("shape,stride", SUM_CASES)
def test_sum_matches_reference(shape, stride, rng):
    x = normal(rng, shape)
    want = ref.sum_forward(x.astype(np.float64), stride)
    abs_sum = ref.sum_forward(np.abs(x).astype(np.float64), stride)
    for misaligned in (False, True):
        y = cu.sum_forward(to_device(x, misaligned), stride,
                           out=poisoned(want.shape, misaligned=misaligned))
        assert_close(y, want, 1e-5, 1e-6 * abs_sum, f"sum_forward misaligned={misaligned}")
    dy = normal(rng, want.shape)
    dx = cu.sum_backward(to_device(dy, True), stride, out=poisoned(shape, misaligned=True))
    assert_equal(dx, ref.sum_backward(dy, stride), "sum_backward")


CROP_CASES = [pytest.param((128, 3, 256, 256), (16, 16), (224, 224), marks=pytest.mark.big),
              ((1, 3, 9, 7), (2, 1), (5, 6)), ((129, 2, 5, 5), (0, 0), (5, 5)),
              ((3, 5, 8, 11), (7, 10), (1, 1)), ((2, 1, 6, 9), (1, 0), (4, 9))]


@pytest.mark.parametrize("shape,start,size", CROP_CASES)
def test_crop_matches_reference(shape, start, size, rng):
    x = normal(rng, shape)
    y_ref = ref.crop_forward(x, start, size)
    y = cu.crop_forward(to_device(x, True), start, size, out=poisoned(y_ref.shape, misaligned=True))
    assert_equal(y, y_ref, "crop_forward")
    dy = normal(rng, y_ref.shape)
    dx = cu.crop_backward(to_device(dy), shape[2:], start, out=poisoned(shape))
    assert_equal(dx, ref.crop_backward(dy, shape[2:], start), "crop_backward")


# ----------------------------------------------------------------------------------------------
# costs

ROW_SHAPES = [pytest.param((128, 1000), marks=pytest.mark.big), (1, 10), (129, 7), (3, 1),
              (5, 200), (64, 33)]


def probabilities(rng, shape):
    """Softmax rows with a tie of two maxima in row 0 and an exact zero in row 1 (safelog)."""
    p = softmax_forward(normal(rng, shape, 3.0))
    if shape[1] >= 2:
        p[0, 1] = p[0, 0] = p[0].max()
        if shape[0] >= 2:
            p[1, 0] = 0
    return p


def label_values(rng, shape):
    """Soft weights with zeros among them, and one-hot rows in the second half."""
    t = rng.uniform(0, 1, shape).astype(np.float32)
    t[rng.uniform(size=shape) < 0.3] = 0
    half = shape[0] // 2
    t[half:] = np.eye(shape[1], dtype=np.float32)[rng.integers(0, shape[1], shape[0] - half)]
    return t


@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_crossent_matches_reference(shape, rng):
    p, t = probabilities(rng, shape), label_values(rng, shape)
    cost_ref, wrong_ref = ref.crossent_forward(*f64(p, t))
    terms = np.sum(np.abs(t.astype(np.float64) * ref.safelog(p.astype(np.float64))), axis=1)
    outs = (poisoned((shape[0],)), poisoned((shape[0],), misaligned=True))
    cost, wrong = cu.crossent_forward(to_device(p), to_device(t, True), out=outs)
    assert_close(cost, cost_ref, 1e-4, 1e-5 * terms, "crossent_forward cost")
    assert_close(wrong, wrong_ref, 1e-6, 0, "crossent_forward wrong")
    scale = 1.0 / shape[0]
    dp_ref = ref.crossent_backward(*f64(p, t), scale)
    dp = cu.crossent_backward(to_device(p, True), to_device(t), scale,
                              out=poisoned(shape, misaligned=True))
    finite = np.isfinite(dp_ref)
    assert_close(np.where(finite, host(dp), 0), np.where(finite, dp_ref, 0), 1e-5, 0,
                 "crossent_backward")
    assert np.array_equal(host(dp)[~finite], dp_ref[~finite]), "crossent_backward at p = 0"
    dx_ref = ref.softmax_crossent_backward(*f64(p, t), scale)
    dx = cu.softmax_crossent_backward(to_device(p), to_device(t), scale, out=poisoned(shape))
    row_sum = np.abs(t.astype(np.float64)).sum(axis=1, keepdims=True)
    assert_close(dx, dx_ref, 1e-5, 1e-5 * scale * (p * row_sum + t), "softmax_crossent_backward")


def targets(rng, shape):
    """Outputs of a logistic unit and binary labels (soft ones in some rows), with exact 0, 0.5
    and 1 outputs among them."""
    y = rng.uniform(0.01, 0.99, shape).astype(np.float32)
    t = (rng.uniform(size=shape) < 0.4).astype(np.float32)
    t[::3] = rng.uniform(0, 1, t[::3].shape)
    flat_y, flat_t = y.reshape(-1), t.reshape(-1)
    for i, (value, label) in enumerate([(0.0, 0.0), (1.0, 1.0), (0.5, 1.0), (0.5, 0.0)]):
        if i < flat_y.size:
            flat_y[i], flat_t[i] = value, label
    return y, t


@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("pos_weight", [1.0, 2.5])
def test_bce_and_dce_match_reference(shape, pos_weight, rng):
    y, t = targets(rng, shape)
    n = shape[0]
    y64, t64 = f64(y, t)
    terms = np.sum(np.abs(pos_weight * t64 * ref.safelog(y64))
                   + np.abs((1 - t64) * ref.safelog(1 - y64)), axis=1)
    cost_ref, wrong_ref, top1_ref = ref.bce_forward(y64, t64, pos_weight)
    outs = tuple(poisoned((n,), misaligned=m) for m in (False, True, False))
    cost, wrong, top1 = cu.bce_forward(to_device(y), to_device(t), pos_weight, out=outs)
    assert_close(cost, cost_ref, 1e-4, 1e-5 * terms, "bce_forward cost")
    assert_close(wrong, wrong_ref, 1e-6, 0, "bce_forward wrong")
    assert_close(top1, top1_ref, 1e-6, 1e-7, "bce_forward top1_wrong")

    dce_ref = ref.dce_forward(y64, t64, pos_weight)
    outs = (poisoned((n,)), poisoned((n,)), poisoned((shape[1], 3), misaligned=True))
    cost, wrong, counts = cu.dce_forward(to_device(y, True), to_device(t), pos_weight, out=outs)
    assert_close(cost, dce_ref[0], 1e-4, 1e-5 * terms, "dce_forward cost")
    assert_close(wrong, dce_ref[1], 1e-6, 0, "dce_forward wrong")
    assert_close(counts, dce_ref[2], 1e-5, 0, "dce_forward counts")

    scale = -0.5 / n
    first = np.abs(ref._ratio(pos_weight * t64, y64))
    second = np.abs(ref._ratio(1 - t64, 1 - y64))
    bound = 1e-6 * abs(scale) * (first + second)
    for name in ("bce_backward", "dce_backward"):
        got = getattr(cu, name)(to_device(y), to_device(t, True), scale, pos_weight,
                                out=poisoned(shape, misaligned=True))
        assert_close(got, getattr(ref, name)(y64, t64, scale, pos_weight), 1e-5, bound, name)
    got = cu.logistic_bce_backward(to_device(y), to_device(t), scale, pos_weight,
                                   out=poisoned(shape))
    bound = 1e-6 * abs(scale) * (pos_weight * t64 * (1 - y64) + (1 - t64) * y64)
    assert_close(got, ref.logistic_bce_backward(y64, t64, scale, pos_weight), 1e-5, bound,
                 "logistic_bce_backward")


def test_dce_counts_of_binary_labels_are_exact(rng):
    shape = (1000, 37)
    y, t = targets(rng, shape)
    t = (t > 0.5).astype(np.float32)
    _, _, counts = cu.dce_forward(to_device(y), to_device(t))
    assert_equal(counts, ref.dce_forward(y, t)[2], "dce_forward counts")


# ----------------------------------------------------------------------------------------------
# bad arguments


def test_cc2_ops_reject_bad_arguments():
    x = cupy.zeros((2, 5, 3, 3), cupy.float32)
    with pytest.raises(ValueError, match="cmpool_forward: stride must be <= size"):
        cu.cmpool_forward(x, 2, 3, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: .* cover only 4 of 5 channels"):
        cu.cmpool_forward(x, 2, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: x must be float32"):
        cu.cmpool_forward(x.astype(cupy.float64), 3, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: x must be a cupy.ndarray"):
        cu.cmpool_forward(np.zeros((2, 5), np.float32), 3, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: out has shape"):
        cu.cmpool_forward(x, 3, 2, 0, 2, out=cupy.zeros((2, 3, 3, 3), cupy.float32))
    y = cu.cmpool_forward(x, 3, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_backward: out overlaps an input"):
        cu.cmpool_backward(x, y, y, 3, 2, 0, out=x)
    with pytest.raises(ValueError, match="cmpool_backward: y .* do not pool x"):
        cu.cmpool_backward(x, y[..., :2].copy(), y[..., :2].copy(), 3, 2, 0)
    with pytest.raises(ValueError, match="sum_forward: stride 2 must divide axis 1"):
        cu.sum_forward(x, 2)
    with pytest.raises(ValueError, match="sum_backward: dy must be C-contiguous"):
        cu.sum_backward(x.transpose(1, 0, 2, 3), 2)
    with pytest.raises(ValueError, match=r"crop_forward: the window's y span \[2, 4\) leaves"):
        cu.crop_forward(x, (2, 0), (2, 2))
    with pytest.raises(ValueError, match="crop_backward: img_size must be"):
        cu.crop_backward(x, (3,), (0, 0))
    p = cupy.full((2, 3), 1 / 3, cupy.float32)
    with pytest.raises(ValueError, match="crossent_forward: labels must have the probabilities'"):
        cu.crossent_forward(p, cupy.zeros(2, cupy.float32))
    with pytest.raises(ValueError, match="crossent_backward: labels must be float32"):
        cu.crossent_backward(p, cupy.zeros((2, 3), cupy.int32), 1.0)
    with pytest.raises(ValueError, match=r"softmax_crossent_backward: p must be \(N, K\)"):
        cu.softmax_crossent_backward(p.ravel(), p.ravel(), 1.0)
    with pytest.raises(ValueError, match="bce_forward: out must be a tuple of 3 arrays"):
        cu.bce_forward(p, p, out=(cupy.zeros(2, cupy.float32),))
    with pytest.raises(ValueError, match="bce_backward: pos_weight must be >= 0"):
        cu.bce_backward(p, p, 1.0, -2.0)
    with pytest.raises(ValueError, match=r"dce_forward: out\[2\] has shape"):
        cu.dce_forward(p, p, out=(cupy.zeros(2, cupy.float32), cupy.zeros(2, cupy.float32),
                                  cupy.zeros((2, 3), cupy.float32)))


def test_launchers_refuse_windows_outside_their_arrays():
    """The kernels' own checks (ValueError from convnet::require) guard calls past the wrapper."""
    x = cupy.zeros((2, 5, 3, 3), cupy.float32)
    y = cupy.zeros((2, 2, 3, 3), cupy.float32)
    with pytest.raises(ValueError, match="cmpool_forward: every window must overlap"):
        _C.cmpool_forward(x.data.ptr, y.data.ptr, 2, 5, 2, 9, 3, 2, 4, 0)
    with pytest.raises(ValueError, match="crop_backward: the window must lie inside"):
        _C.crop_backward(y.data.ptr, x.data.ptr, 10, 3, 3, 3, 3, 1, 0, 0)
    with pytest.raises(ValueError, match="sum_forward: stride must be >= 1"):
        _C.sum_forward(x.data.ptr, y.data.ptr, 2, 5, 0, 9, 0)
