"""cuda-convnet2's map layers: cross-map max pooling (cmpool), the strided sum and crop. One case
list per op: the NumPy reference (numpy_cc2.py) against direct loop definitions, hand-computed
cases and float64 gradient checks on the cases that are not `big`, then the cuda backend
(cuda_cc2.py -> convnet._C) against the reference on every case (on a GPU or the CPU emulator;
tests/opcheck.py says how: poisoned outputs, inputs off 16-byte alignment, batch 1 and 129).

cuda bounds, float32 against the reference: cmpool, crop and sum_backward equal to the float32
reference bit for bit (maxima, copies, and window sums added in the reference's order);
sum_forward |err| <= 1e-5 |ref| + 1e-6 sum |terms|.
"""
import itertools

import numpy as np
import pytest

from convnet.backend import numpy_cc2 as ref
from gradcheck import check_op_grads
from opcheck import (_C, assert_close, assert_equal, cu, cuda_test, cupy, distinct_values, normal,
                     poisoned, reference_cases, to_device)


# ----------------------------------------------------------------------------------------------
# cmpool

# (x shape, size, stride, start, outputs or None for cmpool_output_size)
CMPOOL_CASES = [
    pytest.param(((128, 96, 27, 27), 3, 2, 0, None), marks=pytest.mark.big),
    ((2, 5, 3, 4), 3, 2, 0, None),     # overlapping 3/2, the last window clipped
    ((1, 5, 3, 4), 3, 2, 0, None),
    ((1, 7, 2, 3), 3, 2, -1, None),    # start < 0: the first window hangs below channel 0
    ((129, 7, 2, 3), 3, 2, -1, None),
    ((3, 6, 1, 1), 2, 2, 0, None),     # non-overlapping (maxout over maps)
    ((3, 6, 5, 1), 2, 2, 0, None),
    ((2, 12), 4, 4, 0, None),          # fc activations: maxout over units
    ((5, 12), 4, 4, 0, None),
    ((2, 4, 3, 2), 4, 1, -3, None),    # stride 1, every window clipped but the last
    ((4, 4, 3, 2), 4, 1, -3, None),
    ((1, 5, 2, 2), 3, 2, 0, 3),        # one output more than the fewest that cover
    ((2, 17, 3, 5), 5, 3, -2, 6),
    ((4, 9, 5), 5, 3, -2, None),       # 3-D input, awkward sizes
]


def cmpool_id(case):
    shape, size, stride, start, outputs = case
    return f"{'x'.join(map(str, shape))}-z{size}s{stride}st{start}o{outputs}"


def cmpool_case(case):
    shape, size, stride, start, outputs = case
    if outputs is None:
        outputs = ref.cmpool_output_size(shape[1], size, stride, start)
    return shape, size, stride, start, outputs


def direct_cmpool(x, size, stride, start, outputs):
    y = np.empty((x.shape[0], outputs) + x.shape[2:])
    for o in range(outputs):
        chans = [c for c in range(start + o * stride, start + o * stride + size)
                 if 0 <= c < x.shape[1]]
        y[:, o] = np.max([x[:, c] for c in chans], axis=0)
    return y


@pytest.mark.parametrize("case", reference_cases(CMPOOL_CASES), ids=cmpool_id)
def test_cmpool_forward_matches_direct(case, rng):
    shape, size, stride, start, outputs = cmpool_case(case)
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(ref.cmpool_forward(x, size, stride, start, outputs),
                                  direct_cmpool(x, size, stride, start, outputs))


@pytest.mark.parametrize("case", reference_cases(CMPOOL_CASES), ids=cmpool_id)
def test_cmpool_backward_gradcheck(case, rng):
    shape, size, stride, start, outputs = cmpool_case(case)
    x = distinct_values(rng, shape)
    y = ref.cmpool_forward(x, size, stride, start, outputs)
    check_op_grads(lambda a: ref.cmpool_forward(a, size, stride, start, outputs),
                   lambda dy: [ref.cmpool_backward(x, y, dy, size, stride, start)], [x], rng)


def test_cmpool_output_size_is_the_fewest_that_cover():
    for channels, size, stride, start in itertools.product(range(1, 9), range(1, 5),
                                                           range(1, 5), range(-3, 1)):
        if stride > size or start + size <= 0:
            continue
        out = ref.cmpool_output_size(channels, size, stride, start)
        assert start + (out - 1) * stride + size >= channels
        assert out == 1 or start + (out - 2) * stride + size < channels


def test_cmpool_hand_computed():
    # channels 1 3 2 5 4, windows [0, 3) and [2, 5): maxima 3 (channel 1) and 5 (channel 3)
    x = np.array([1.0, 3, 2, 5, 4]).reshape(1, 5, 1, 1)
    y = ref.cmpool_forward(x, 3, 2, 0, 2)
    np.testing.assert_array_equal(y.ravel(), [3, 5])
    dy = np.array([10.0, 20]).reshape(y.shape)
    np.testing.assert_array_equal(ref.cmpool_backward(x, y, dy, 3, 2, 0).ravel(),
                                  [0, 10, 0, 20, 0])


def test_cmpool_backward_reaches_every_window_of_a_channel():
    # channel 2 is the max of both windows [0, 3) and [2, 5): it gets both gradients
    # (cuda-convnet2's undo kernel, truncating (2 - 0 - 3) / 2 to 0, gives it window 1's only)
    x = np.array([1.0, 2, 3, 0, 0]).reshape(1, 5)
    y = ref.cmpool_forward(x, 3, 2, 0, 2)
    np.testing.assert_array_equal(y, [[3, 3]])
    np.testing.assert_array_equal(ref.cmpool_backward(x, y, np.array([[10.0, 20]]), 3, 2, 0),
                                  [[0, 0, 30, 0, 0]])


def test_cmpool_ties_share_the_gradient():
    x = np.ones((1, 4, 1, 1), dtype=np.float32)
    y = ref.cmpool_forward(x, 2, 2, 0, 2)
    dx = ref.cmpool_backward(x, y, np.array([1.0, 2], dtype=np.float32).reshape(y.shape), 2, 2, 0)
    np.testing.assert_array_equal(dx.ravel(), [1, 1, 2, 2])
    assert y.dtype == dx.dtype == np.float32


def test_cmpool_rejects_bad_arguments():
    x = np.zeros((2, 5, 3, 3))
    with pytest.raises(ValueError, match="cmpool_forward: stride must be <= size"):
        ref.cmpool_forward(x, 2, 3, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: start must be <= 0"):
        ref.cmpool_forward(x, 3, 1, 1, 2)
    with pytest.raises(ValueError, match="cmpool_forward: .* cover only 4 of 5 channels"):
        ref.cmpool_forward(x, 2, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: .* do not all overlap 5 channels"):
        ref.cmpool_forward(x, 3, 2, 0, 4)
    with pytest.raises(ValueError, match="cmpool_forward: .* do not all overlap"):
        ref.cmpool_forward(x, 2, 1, -2, 6)
    with pytest.raises(ValueError, match="cmpool_forward: size must be an integer >= 1"):
        ref.cmpool_forward(x, 0, 1, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: outputs must be an integer"):
        ref.cmpool_forward(x, 3, 2, 0, 2.5)
    with pytest.raises(ValueError, match=r"cmpool_forward: x must be \(N, C, ...\)"):
        ref.cmpool_forward(np.zeros(5), 3, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: x must be float32 or float64"):
        ref.cmpool_forward(x.astype(int), 3, 2, 0, 2)
    y = ref.cmpool_forward(x, 3, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_backward: dy shape"):
        ref.cmpool_backward(x, y, y[:1], 3, 2, 0)
    with pytest.raises(ValueError, match="cmpool_backward: y .* do not pool x"):
        ref.cmpool_backward(x, y[..., :2], y[..., :2], 3, 2, 0)


@cuda_test
@pytest.mark.parametrize("case", CMPOOL_CASES, ids=cmpool_id)
def test_cmpool_cuda_matches_reference(case, rng):
    shape, size, stride, start, outputs = cmpool_case(case)
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


@cuda_test
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

SUM_CASES = [((3, 12), 4), ((2, 6, 3, 5), 3), ((1, 7, 2, 2), 7), ((4, 5), 1), ((2, 8, 3), 2)]


@pytest.mark.parametrize("shape,stride", SUM_CASES)
def test_sum_forward_matches_direct_and_gradcheck(shape, stride, rng):
    x = rng.standard_normal(shape)
    y = ref.sum_forward(x, stride)
    direct = np.stack([sum(x[:, j * stride + i] for i in range(stride))
                       for j in range(shape[1] // stride)], axis=1)
    np.testing.assert_allclose(y, direct, rtol=1e-14, atol=1e-15)
    check_op_grads(lambda a: ref.sum_forward(a, stride),
                   lambda dy: [ref.sum_backward(dy, stride)], [x], rng)


def test_sum_hand_computed():
    y = ref.sum_forward(np.array([[1.0, 2, 3, 4, 5, 6]], dtype=np.float32), 3)
    np.testing.assert_array_equal(y, [[6, 15]])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(ref.sum_backward(np.array([[1.0, 2]]), 3), [[1, 1, 1, 2, 2, 2]])


def test_sum_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sum_forward: stride 4 must divide axis 1"):
        ref.sum_forward(np.zeros((2, 6)), 4)
    with pytest.raises(ValueError, match="sum_forward: stride must be an integer >= 1"):
        ref.sum_forward(np.zeros((2, 6)), 0)
    with pytest.raises(ValueError, match="sum_forward: stride 1 must divide axis 1"):
        ref.sum_forward(np.zeros(6), 1)
    with pytest.raises(ValueError, match=r"sum_backward: dy must be \(N, C, ...\)"):
        ref.sum_backward(np.zeros(6), 2)


# (x shape, start (y, x), size (h, w))
CROP_CASES = [((2, 3, 7, 6), (1, 2), (4, 3)), ((1, 1, 5, 5), (0, 0), (5, 5)),
              ((3, 2, 9, 4), (8, 3), (1, 1)), ((2, 4, 6, 8), (2, 0), (3, 8))]


@pytest.mark.parametrize("shape,start,size", CROP_CASES)
def test_crop_matches_direct_and_gradcheck(shape, start, size, rng):
    x = rng.standard_normal(shape)
    y = ref.crop_forward(x, start, size)
    direct = np.array([[[[x[n, c, start[0] + i, start[1] + j] for j in range(size[1])]
                         for i in range(size[0])] for c in range(shape[1])]
                       for n in range(shape[0])])
    np.testing.assert_array_equal(y, direct)
    check_op_grads(lambda a: ref.crop_forward(a, start, size),
                   lambda dy: [ref.crop_backward(dy, shape[2:], start)], [x], rng)


def test_crop_backward_is_zero_outside_the_window():
    dx = ref.crop_backward(np.full((1, 1, 2, 2), 3.0, dtype=np.float32), (4, 3), (1, 1))
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0], [0, 3, 3], [0, 3, 3], [0, 0, 0]])
    assert dx.dtype == np.float32


def test_crop_rejects_bad_arguments():
    x = np.zeros((1, 2, 5, 6))
    with pytest.raises(ValueError, match=r"crop_forward: the window's x span \[3, 7\) leaves"):
        ref.crop_forward(x, (0, 3), (2, 4))
    with pytest.raises(ValueError, match="crop_forward: start must be an integer >= 0"):
        ref.crop_forward(x, (-1, 0), (2, 2))
    with pytest.raises(ValueError, match="crop_forward: size must be an integer >= 1"):
        ref.crop_forward(x, (0, 0), (0, 2))
    with pytest.raises(ValueError, match="crop_forward: start and size must be pairs"):
        ref.crop_forward(x, (0,), (2, 2))
    with pytest.raises(ValueError, match="crop_forward: x must be 4-D"):
        ref.crop_forward(x[0], (0, 0), (2, 2))
    with pytest.raises(ValueError, match=r"crop_backward: the window's y span \[4, 6\) leaves"):
        ref.crop_backward(np.zeros((1, 2, 2, 2)), (5, 6), (4, 0))
    with pytest.raises(ValueError, match=r"crop_backward: img_size must be \(H, W\)"):
        ref.crop_backward(np.zeros((1, 2, 2, 2)), (5,), (0, 0))


# the cuda backend


SUM_CASES = [pytest.param((128, 4096), 4, marks=pytest.mark.big), ((1, 3), 3), ((129, 12), 4),
             ((3, 10, 5, 7), 5), ((2, 9, 3), 1), ((4, 8, 2, 2), 8)]


@cuda_test
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


@cuda_test
@pytest.mark.parametrize("shape,start,size", CROP_CASES)
def test_crop_matches_reference(shape, start, size, rng):
    x = normal(rng, shape)
    y_ref = ref.crop_forward(x, start, size)
    y = cu.crop_forward(to_device(x, True), start, size, out=poisoned(y_ref.shape, misaligned=True))
    assert_equal(y, y_ref, "crop_forward")
    dy = normal(rng, y_ref.shape)
    dx = cu.crop_backward(to_device(dy), shape[2:], start, out=poisoned(shape))
    assert_equal(dx, ref.crop_backward(dy, shape[2:], start), "crop_backward")


@cuda_test
def test_cuda_map_ops_reject_bad_arguments():
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


@cuda_test
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
