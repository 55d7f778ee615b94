"""NumPy reference: sgd_update (momentum + weight decay, in place) and maxnorm (in place)."""
import numpy as np
import pytest

from convnet.backend.numpy_update import maxnorm, sgd_update


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
