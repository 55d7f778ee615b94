"""Max and average pooling: one case list on the NumPy backend (numpy_pool against numpy_direct's
definitions and float64 gradients) and on the cuda backend (csrc/pool.cu against the reference,
on a GPU or the CPU emulator; tests/opcheck.py says how).

cuda bounds, float32 against the float64 reference, every out= poisoned with NaN:
  maxpool_forward                  equal to the float32 reference
  the rest (window sums)           |err| <= 1e-5 |ref| + 1e-6 max|ref|
"""
import itertools

import numpy as np
import pytest

from convnet.backend.numpy_direct import avgpool_forward_direct, maxpool_forward_direct
from convnet.backend.numpy_pool import (
    avgpool_backward, avgpool_forward, maxpool_backward, maxpool_forward, pool_output_size)
from gradcheck import check_op_grads
from opcheck import (assert_close, assert_equal, cu, cuda_test, cupy, distinct_values,
                     memory_orders, normal, on_backends, poisoned, reference_cases, to_device)

# (shape, size, stride, start, out_size or None for the default)
CASES = [
    ((1, 1, 5, 5), 3, 2, 0, None),        # batch 1, overlapping 3/2
    ((2, 3, 7, 6), 3, 2, 0, None),        # rectangular, the last window clipped
    ((2, 2, 9, 9), 2, 2, 0, None),        # non-overlapping, 9 is odd: last window half outside
    ((1, 3, 6, 7), 3, 2, -1, None),       # start < 0: the first window hangs over the top/left
    ((2, 2, 8, 8), 3, 2, 1, None),        # start > 0: row/column 0 is in no window
    ((3, 2, 11, 10), 3, 3, 0, (2, 3)),    # out_size smaller than the default
    ((2, 1, 7, 5), 4, 1, -2, None),       # stride 1, large negative start
    ((1, 2, 8, 11), 2, 3, 0, None),       # stride > size: gaps between windows
    pytest.param(((128, 96, 55, 55), 3, 2, 0, None), marks=pytest.mark.big),  # AlexNet pool1
    ((1, 3, 7, 9), 3, 2, 0, None),
    ((3, 17, 13, 13), 3, 3, -1, None),
    ((129, 5, 6, 6), 2, 1, 0, None),      # batch 129
    ((2, 7, 8, 5), 4, 2, 0, None),        # the last column window is clipped
    ((4, 20, 9, 9), 5, 2, -2, None),
]


def case_id(case):
    (n, c, h, w), size, stride, start, out_size = case
    return f"n{n}c{c}h{h}w{w}z{size}s{stride}st{start}o{out_size}"


def pool_case(case):
    shape, size, stride, start, out_size = case
    if out_size is None:
        out_size = tuple(pool_output_size(s, size, stride, start) for s in shape[2:])
    return shape, size, stride, start, out_size


on_both = on_backends(CASES, case_id)
for_reference = pytest.mark.parametrize("case", reference_cases(CASES), ids=case_id)


# ---------------------------------------------------------------------------------------------
# the case list on both backends


def maxpool_numpy(case, rng):
    """Forward equals the direct definition; backward passes the float64 gradient check."""
    shape, size, stride, start, out_size = pool_case(case)
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(maxpool_forward(x, size, stride, start, out_size),
                                  maxpool_forward_direct(x, size, stride, start, out_size))
    x = distinct_values(rng, shape)
    y = maxpool_forward(x, size, stride, start, out_size)
    check_op_grads(lambda x: maxpool_forward(x, size, stride, start, out_size),
                   lambda dy: [maxpool_backward(x, y, dy, size, stride, start)], [x], rng)


def maxpool_cuda(case, rng):
    shape, size, stride, start, out_size = pool_case(case)
    x = normal(rng, shape)
    y_ref = maxpool_forward(x, size, stride, start, out_size)
    y = cu.maxpool_forward(to_device(x), size, stride, start, out_size,
                           out=poisoned(y_ref.shape))
    assert_equal(y, y_ref, "maxpool_forward")
    dy = normal(rng, y_ref.shape)
    dx_ref = maxpool_backward(x.astype(np.float64), y_ref.astype(np.float64),
                              dy.astype(np.float64), size, stride, start)
    dx = cu.maxpool_backward(to_device(x), y, to_device(dy), size, stride, start,
                             out=poisoned(shape))
    assert_close(dx, dx_ref, 1e-5, 1e-6 * np.abs(dx_ref).max(), "maxpool_backward")


def avgpool_numpy(case, rng):
    shape, size, stride, start, out_size = pool_case(case)
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(avgpool_forward(x, size, stride, start, out_size),
                               avgpool_forward_direct(x, size, stride, start, out_size),
                               rtol=1e-13, atol=1e-13)
    check_op_grads(lambda x: avgpool_forward(x, size, stride, start, out_size),
                   lambda dy: [avgpool_backward(dy, shape[2:], size, stride, start)], [x], rng)


def avgpool_cuda(case, rng):
    shape, size, stride, start, out_size = pool_case(case)
    x = normal(rng, shape)
    y_ref = avgpool_forward(x.astype(np.float64), size, stride, start, out_size)
    y = cu.avgpool_forward(to_device(x), size, stride, start, out_size,
                           out=poisoned(y_ref.shape))
    abs_ref = avgpool_forward(np.abs(x).astype(np.float64), size, stride, start, out_size)
    assert_close(y, y_ref, 1e-5, 1e-6 * abs_ref, "avgpool_forward")
    dy = normal(rng, y_ref.shape)
    dx_ref = avgpool_backward(dy.astype(np.float64), shape[2:], size, stride, start)
    dx = cu.avgpool_backward(to_device(dy), shape[2:], size, stride, start,
                             out=poisoned(shape))
    assert_close(dx, dx_ref, 1e-5, 1e-6 * np.abs(dx_ref).max(), "avgpool_backward")


@on_both
def test_maxpool_forward_backward(backend, case, rng):
    {"numpy": maxpool_numpy, "cuda": maxpool_cuda}[backend](case, rng)


@on_both
def test_avgpool_forward_backward(backend, case, rng):
    {"numpy": avgpool_numpy, "cuda": avgpool_cuda}[backend](case, rng)


# ---------------------------------------------------------------------------------------------
# the reference: sizes and values by hand, ties, dtypes, memory orders


@pytest.mark.parametrize("img, size, stride, start, expected", [
    (55, 3, 2, 0, 27),    # AlexNet's pool1
    (27, 3, 2, 0, 13),
    (13, 3, 2, 0, 6),
    (5, 3, 2, 0, 2),
    (28, 2, 2, 0, 14),
    (9, 2, 2, 0, 5),      # 1 + ceil(7 / 2)
    (6, 3, 2, -1, 3),     # 1 + ceil(4 / 2)
    (8, 3, 2, 1, 3),      # 1 + ceil(4 / 2)
])
def test_pool_output_size_cuda_convnet_cases(img, size, stride, start, expected):
    assert pool_output_size(img, size, stride, start) == expected


def test_maxpool_forward_overlapping_3_2_on_known_map():
    x = np.array([[1, 9, 2, 4, 0],
                  [3, 5, 7, 1, 6],
                  [8, 2, 4, 11, 3],
                  [0, 6, 10, 2, 5],
                  [7, 1, 3, 12, 4]], dtype=np.float64)[None, None]
    y = maxpool_forward(x, 3, 2, 0, (2, 2))
    np.testing.assert_array_equal(y[0, 0], [[9, 11], [10, 12]])


def test_avgpool_forward_divides_by_the_clipped_count():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    # 3/2 on 4x4: 2 outputs; window 1 covers rows/cols 2..4, clipped to 2..3
    y = avgpool_forward(x, 3, 2, 0, (2, 2))
    np.testing.assert_array_equal(y[0, 0], [[5.0, 6.5], [11.0, 12.5]])
    np.testing.assert_array_equal(avgpool_forward(np.ones((1, 1, 4, 4)), 3, 2, 0, (2, 2)),
                                  np.ones((1, 1, 2, 2)))
    # start -1: window 0 covers -1..1, clipped to 0..1 (4 pixels)
    y = avgpool_forward(x, 3, 2, -1, (2, 2))
    np.testing.assert_array_equal(y[0, 0], [[2.5, 4.0], [8.5, 10.0]])


def test_avgpool_backward_spreads_each_share_over_the_clipped_window():
    dy = np.array([[[[9.0, 6.0], [6.0, 4.0]]]])
    dx = avgpool_backward(dy, (4, 4), 3, 2, 0)
    # window (0,0): 9 pixels get 1; (0,1): 6 get 1; (1,0): 6 get 1; (1,1): 4 get 1; overlaps add
    expected = np.array([[1, 1, 2, 1],
                         [1, 1, 2, 1],
                         [2, 2, 4, 2],
                         [1, 1, 2, 1]], dtype=np.float64)
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_maxpool_backward_ties_share_the_gradient():
    x = np.array([[5.0, 1.0, 5.0],
                  [0.0, 2.0, 3.0],
                  [4.0, 4.0, 1.0]])[None, None]
    # 2/1 windows: (0,0) max 5 at (0,0); (0,1) max 5 at (0,2); (1,0) max 4 twice; (1,1) 4 at (2,1)
    y = maxpool_forward(x, 2, 1, 0, (2, 2))
    np.testing.assert_array_equal(y[0, 0], [[5.0, 5.0], [4.0, 4.0]])
    dy = np.array([[1.0, 10.0], [100.0, 1000.0]])[None, None]
    dx = maxpool_backward(x, y, dy, 2, 1, 0)
    expected = np.array([[1.0, 0.0, 10.0],
                         [0.0, 0.0, 0.0],
                         [100.0, 1100.0, 0.0]])
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_maxpool_backward_equal_values_in_one_window_each_get_it_all():
    x = np.full((1, 1, 3, 3), 2.0)
    y = maxpool_forward(x, 3, 3, 0, (1, 1))
    dx = maxpool_backward(x, y, np.array([[[[0.5]]]]), 3, 3, 0)
    np.testing.assert_array_equal(dx, np.full((1, 1, 3, 3), 0.5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooling_keeps_dtype(rng, dtype):
    x = rng.standard_normal((2, 3, 7, 7)).astype(dtype)
    y = maxpool_forward(x, 3, 2, 0, (3, 3))
    outs = [y, maxpool_backward(x, y, y, 3, 2, 0), avgpool_forward(x, 3, 2, 0, (3, 3)),
            avgpool_backward(y, (7, 7), 3, 2, 0)]
    assert [o.dtype for o in outs] == [np.dtype(dtype)] * 4


@for_reference
def test_pooling_gives_the_same_results_for_every_memory_order(rng, case):
    """Results are NCHW views of (C, H, W, N) memory, and callers pass them on (as they do conv
    outputs): x, y and dy in any memory order give exactly the results of C-contiguous arrays."""
    shape, size, stride, start, out_size = pool_case(case)
    x = np.round(rng.standard_normal(shape))                  # ties, whose gradient is shared
    y = maxpool_forward(x, size, stride, start, out_size)
    assert y.transpose(1, 2, 3, 0).flags.c_contiguous
    dy = rng.standard_normal(y.shape)
    whole = [y, maxpool_backward(x, y, dy, size, stride, start),
             avgpool_forward(x, size, stride, start, out_size),
             avgpool_backward(dy, shape[2:], size, stride, start)]
    for x_order, y_order, dy_order in itertools.product(
            *(memory_orders(a).values() for a in (x, y, dy))):
        results = [maxpool_forward(x_order, size, stride, start, out_size),
                   maxpool_backward(x_order, y_order, dy_order, size, stride, start),
                   avgpool_forward(x_order, size, stride, start, out_size),
                   avgpool_backward(dy_order, shape[2:], size, stride, start)]
        for result, ref in zip(results, whole):
            np.testing.assert_array_equal(result, ref)


def test_pooling_start_past_zero_leaves_unread_pixels_without_gradient(rng):
    x = distinct_values(rng, (2, 2, 8, 8))
    y = maxpool_forward(x, 3, 2, 1, (3, 3))
    dx_max = maxpool_backward(x, y, np.ones_like(y), 3, 2, 1)
    dx_avg = avgpool_backward(np.ones_like(y), (8, 8), 3, 2, 1)
    for dx in (dx_max, dx_avg):
        assert not dx[:, :, 0, :].any() and not dx[:, :, :, 0].any()
    assert dx_avg[:, :, 1:, 1:].all()


# ---------------------------------------------------------------------------------------------
# the cuda backend alone: ties at scale


@cuda_test
def test_cuda_maxpool_backward_ties_share_the_gradient(rng):
    """Inputs drawn from four values: most windows hold several maxima, and each gets dy."""
    shape, size, stride, start, out_size = pool_case(((5, 6, 11, 11), 3, 2, 0, None))
    x = rng.integers(0, 4, shape).astype(np.float32)
    y = maxpool_forward(x, size, stride, start, out_size)
    dy = normal(rng, y.shape)
    dx_ref = maxpool_backward(x.astype(np.float64), y.astype(np.float64),
                              dy.astype(np.float64), size, stride, start)
    dx = cu.maxpool_backward(to_device(x), to_device(y), to_device(dy), size, stride, start,
                             out=poisoned(shape))
    assert_close(dx, dx_ref, 1e-5, 1e-6 * np.abs(dx_ref).max(), "maxpool_backward with ties")


# ---------------------------------------------------------------------------------------------
# bad arguments


def test_pooling_rejects_windows_off_the_image(rng):
    x = rng.standard_normal((1, 1, 6, 6))
    with pytest.raises(ValueError, match="maxpool_forward.*outputs do not all overlap"):
        maxpool_forward(x, 3, 2, 0, (4, 3))          # window 3 starts at row 6
    with pytest.raises(ValueError, match="avgpool_forward.*start=-3"):
        avgpool_forward(x, 3, 2, -3, (2, 2))         # window 0 ends at row 0
    with pytest.raises(ValueError, match="avgpool_backward.*outputs do not all overlap"):
        avgpool_backward(np.ones((1, 1, 5, 1)), (6, 6), 2, 2, 0)
    # stride > size: the default count 1 + ceil((9 - 2) / 3) = 4 puts window 3 at 9..10, empty
    assert pool_output_size(9, 2, 3, 0) == 4
    with pytest.raises(ValueError, match="maxpool_forward.*4 outputs do not all overlap"):
        maxpool_forward(rng.standard_normal((1, 1, 9, 9)), 2, 3, 0, (4, 4))


def test_pooling_rejects_bad_arguments(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    with pytest.raises(ValueError, match="maxpool_forward: size"):
        maxpool_forward(x, 0, 2, 0, (3, 3))
    with pytest.raises(ValueError, match="avgpool_forward: stride"):
        avgpool_forward(x, 3, 0, 0, (3, 3))
    with pytest.raises(ValueError, match="maxpool_forward: out_size"):
        maxpool_forward(x, 3, 2, 0, (3,))
    with pytest.raises(ValueError, match="maxpool_forward: x must be 4-D"):
        maxpool_forward(x[0], 3, 2, 0, (2, 2))
    y = maxpool_forward(x, 3, 2, 0, (2, 2))
    with pytest.raises(ValueError, match="maxpool_backward.*disagree"):
        maxpool_backward(x, y, np.ones((1, 2, 2, 3)), 3, 2, 0)


@cuda_test
def test_cuda_pool_rejects_windows_off_the_image():
    x = cupy.zeros((1, 1, 4, 4), cupy.float32)
    with pytest.raises(ValueError, match="maxpool_forward: with start"):
        cu.maxpool_forward(x, 2, 2, 0, (3, 2))
    with pytest.raises(ValueError, match="avgpool_forward: stride"):
        cu.avgpool_forward(x, 2, 0, 0, (2, 2))
