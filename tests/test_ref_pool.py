"""The NumPy reference for max and average pooling against direct definitions and gradients."""
import itertools

import numpy as np
import pytest

from convnet.backend.numpy_direct import avgpool_forward_direct, maxpool_forward_direct
from convnet.backend.numpy_pool import (
    avgpool_backward, avgpool_forward, maxpool_backward, maxpool_forward, pool_output_size)
from gradcheck import check_op_grads
from test_ref_conv import memory_orders


def distinct_values(rng, shape):
    """A random permutation of well separated values: no ties in any window."""
    return rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape) - 0.5


# (batch, channels, height, width, size, stride, start, out_size or None for the default)
POOL_CASES = [
    (1, 1, 5, 5, 3, 2, 0, None),        # batch 1, overlapping 3/2
    (2, 3, 7, 6, 3, 2, 0, None),        # rectangular, the last window clipped
    (2, 2, 9, 9, 2, 2, 0, None),        # non-overlapping, 9 is odd: last window half outside
    (1, 3, 6, 7, 3, 2, -1, None),       # start < 0: the first window hangs over the top/left
    (2, 2, 8, 8, 3, 2, 1, None),        # start > 0: row/column 0 is in no window
    (3, 2, 11, 10, 3, 3, 0, (2, 3)),    # out_size smaller than the default
    (2, 1, 7, 5, 4, 1, -2, None),       # stride 1, large negative start
    (1, 2, 8, 11, 2, 3, 0, None),       # stride > size: gaps between windows
]

CASE_IDS = [f"n{c[0]}c{c[1]}h{c[2]}w{c[3]}z{c[4]}s{c[5]}st{c[6]}o{c[7]}" for c in POOL_CASES]


def pool_case(case):
    n, channels, height, width, size, stride, start, out_size = case
    if out_size is None:
        out_size = (pool_output_size(height, size, stride, start),
                    pool_output_size(width, size, stride, start))
    return (n, channels, height, width), size, stride, start, out_size


# ---------------------------------------------------------------------------------------------
# sizes and forward values


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


@pytest.mark.parametrize("case", POOL_CASES, ids=CASE_IDS)
def test_maxpool_and_avgpool_forward_match_direct_definition(rng, case):
    shape, size, stride, start, out_size = pool_case(case)
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(maxpool_forward(x, size, stride, start, out_size),
                                  maxpool_forward_direct(x, size, stride, start, out_size))
    np.testing.assert_allclose(avgpool_forward(x, size, stride, start, out_size),
                               avgpool_forward_direct(x, size, stride, start, out_size),
                               rtol=1e-13, atol=1e-13)


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


@pytest.mark.parametrize("case", POOL_CASES, ids=CASE_IDS)
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


# ---------------------------------------------------------------------------------------------
# gradients (float64 central differences)


@pytest.mark.parametrize("case", POOL_CASES, ids=CASE_IDS)
def test_maxpool_backward_gradcheck(rng, case):
    shape, size, stride, start, out_size = pool_case(case)
    x = distinct_values(rng, shape)
    y = maxpool_forward(x, size, stride, start, out_size)
    check_op_grads(lambda x: maxpool_forward(x, size, stride, start, out_size),
                   lambda dy: [maxpool_backward(x, y, dy, size, stride, start)], [x], rng)


@pytest.mark.parametrize("case", POOL_CASES, ids=CASE_IDS)
def test_avgpool_backward_gradcheck(rng, case):
    shape, size, stride, start, out_size = pool_case(case)
    x = rng.standard_normal(shape)
    check_op_grads(lambda x: avgpool_forward(x, size, stride, start, out_size),
                   lambda dy: [avgpool_backward(dy, shape[2:], size, stride, start)], [x], rng)


def test_pooling_start_past_zero_leaves_unread_pixels_without_gradient(rng):
    x = distinct_values(rng, (2, 2, 8, 8))
    y = maxpool_forward(x, 3, 2, 1, (3, 3))
    dx_max = maxpool_backward(x, y, np.ones_like(y), 3, 2, 1)
    dx_avg = avgpool_backward(np.ones_like(y), (8, 8), 3, 2, 1)
    for dx in (dx_max, dx_avg):
        assert not dx[:, :, 0, :].any() and not dx[:, :, :, 0].any()
    assert dx_avg[:, :, 1:, 1:].all()


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
