"""sgd_update (momentum + weight decay, in place) and maxnorm (in place): the NumPy reference by
hand, then the cuda backend against it (on a GPU or the CPU emulator).

cuda bounds: sgd_update equal to the float32 reference bit for bit; maxnorm |err| <= 1e-5 |ref|
+ 1e-7.
"""
import numpy as np
import pytest

from convnet.backend import numpy_update
from convnet.backend.numpy_update import maxnorm, sgd_update
from opcheck import assert_close, assert_equal, cu, cuda_test, host, normal, to_device


def test_sgd_update_two_steps_by_hand():
    w = np.array([1.0, -2.0])
    v = np.array([0.0, 0.5])
    eps, mom, wc = 0.1, 0.9, 0.01
    # step 1, g = [1, 2]:
    #   v = 0.9*[0, 0.5] - 0.01*0.1*[1, -2] - 0.1*[1, 2] = [-0.101, 0.252]
    #   w = [1, -2] + v = [0.899, -1.748]
    sgd_update(w, v, np.array([1.0, 2.0]), eps, mom, wc)
    np.testing.assert_allclose(v, [-0.101, 0.252], rtol=1e-14)
    np.testing.assert_allclose(w, [0.899, -1.748], rtol=1e-14)
    # step 2, g = [-1, 0]:
    #   v = 0.9*[-0.101, 0.252] - 0.001*[0.899, -1.748] - 0.1*[-1, 0]
    #     = [-0.0909 - 0.000899 + 0.1, 0.2268 + 0.001748] = [0.008201, 0.228548]
    #   w = [0.907201, -1.519452]
    sgd_update(w, v, np.array([-1.0, 0.0]), eps, mom, wc)
    np.testing.assert_allclose(v, [0.008201, 0.228548], rtol=1e-12)
    np.testing.assert_allclose(w, [0.907201, -1.519452], rtol=1e-12)


def test_sgd_update_in_place_float32(rng):
    w = rng.standard_normal((4, 3)).astype(np.float32)
    v = rng.standard_normal((4, 3)).astype(np.float32)
    g = rng.standard_normal((4, 3)).astype(np.float32)
    w0, v0 = w.copy(), v.copy()
    w_id, v_id = id(w), id(v)
    assert sgd_update(w, v, g, 0.01, 0.9, 5e-4) is None
    assert id(w) == w_id and id(v) == v_id and w.dtype == np.float32 and v.dtype == np.float32
    v_expected = 0.9 * v0.astype(np.float64) - 5e-6 * w0 - 0.01 * g
    np.testing.assert_allclose(v, v_expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w, w0 + v_expected, rtol=1e-5, atol=1e-6)


def test_sgd_update_rejects_mismatched_arrays():
    w = np.ones(3)
    with pytest.raises(ValueError, match="sgd_update: g"):
        sgd_update(w, np.zeros(3), np.zeros(4), 0.1, 0.9, 0.0)
    with pytest.raises(ValueError, match="sgd_update: v"):
        sgd_update(w, np.zeros(3, np.float32), np.zeros(3), 0.1, 0.9, 0.0)


def test_maxnorm_known_matrix_columns():
    # fc weights (K=2, M=3): unit i owns column i; norms 5, 1, sqrt(8)
    w = np.array([[3.0, 0.0, 2.0],
                  [4.0, 1.0, -2.0]])
    maxnorm(w, 2.0, axis=1)
    expected = np.array([[1.2, 0.0, np.sqrt(2)],
                         [1.6, 1.0, -np.sqrt(2)]])
    np.testing.assert_allclose(w, expected, rtol=1e-14)


def test_maxnorm_known_matrix_rows_and_negative_axis():
    w = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    maxnorm(w, 1.0, axis=-2)  # axis 0: unit i owns row i
    np.testing.assert_allclose(w, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]], rtol=1e-14)


def test_maxnorm_conv_filters_bounded(rng):
    w = rng.standard_normal((6, 3, 5, 5)).astype(np.float32)
    norms0 = np.sqrt((w.astype(np.float64) ** 2).sum(axis=(1, 2, 3)))
    wball = float(np.median(norms0))
    w0 = w.copy()
    maxnorm(w, wball, axis=0)
    norms = np.sqrt((w.astype(np.float64) ** 2).sum(axis=(1, 2, 3)))
    assert w.dtype == np.float32
    np.testing.assert_allclose(norms, np.minimum(norms0, wball), rtol=1e-6)
    small = norms0 <= wball
    np.testing.assert_array_equal(w[small], w0[small])


def test_maxnorm_zero_wball_changes_nothing_and_bad_arguments_raise():
    w = np.array([[30.0, 40.0]])
    maxnorm(w, 0.0, axis=0)
    np.testing.assert_array_equal(w, [[30.0, 40.0]])
    with pytest.raises(ValueError, match="maxnorm: wball"):
        maxnorm(w, -1.0, axis=0)
    with pytest.raises(ValueError, match="maxnorm: axis"):
        maxnorm(w, 1.0, axis=2)


# ----------------------------------------------------------------------------------------------
# the cuda backend


@cuda_test
@pytest.mark.parametrize("shape", [(96, 3, 11, 11), (4096, 1000), (7,), (1, 3), (129, 37)])
def test_sgd_update_equals_reference_bit_for_bit(shape, rng):
    w, v, g = normal(rng, shape, 0.01), normal(rng, shape, 1e-3), normal(rng, shape, 0.1)
    eps, mom, wc = 0.01, 0.9, 5e-4
    misaligned = shape == (129, 37)
    wd, vd, gd = to_device(w, misaligned), to_device(v, misaligned), to_device(g)
    numpy_update.sgd_update(w, v, g, eps, mom, wc)
    cu.sgd_update(wd, vd, gd, eps, mom, wc)
    assert_equal(vd, v, "sgd_update v")
    assert_equal(wd, w, "sgd_update w")


@cuda_test
@pytest.mark.parametrize("shape,axis", [((4096, 1000), 1), ((96, 3, 11, 11), 0), ((5, 7, 3), 1),
                                        ((9, 40), -1), ((3, 2, 50), 2)])
def test_maxnorm_matches_reference(shape, axis, rng):
    w = normal(rng, shape)
    others = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    norms = np.sort(np.sqrt(np.sum(w.astype(np.float64) ** 2, axis=others)))
    # Half of the units exceed wball, which lies midway between two norms (never on one).
    half = len(norms) // 2
    wball = float((norms[half - 1] + norms[half]) / 2) if half else float(norms[0] / 2)
    want = w.astype(np.float64)
    numpy_update.maxnorm(want, wball, axis)
    got = to_device(w)
    cu.maxnorm(got, wball, axis)
    assert_close(got, want, 1e-5, 1e-7, "maxnorm")
    unit_norms = np.sqrt(np.sum(host(got).astype(np.float64) ** 2, axis=others))
    assert np.all(unit_norms <= wball * (1 + 1e-5))
    kept = np.sqrt(np.sum(w.astype(np.float64) ** 2, axis=others)) < wball
    assert kept.any() and (~kept).any()
    assert_equal(np.compress(kept, host(got), axis=axis), np.compress(kept, w, axis=axis),
                 "maxnorm leaves short units alone")


@cuda_test
def test_cuda_maxnorm_zero_wball_changes_nothing(rng):
    w = normal(rng, (6, 5))
    got = to_device(w)
    cu.maxnorm(got, 0.0, 1)
    assert_equal(got, w, "maxnorm wball=0")
