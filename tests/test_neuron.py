"""The neurons of cuda-convnet (neuron_forward / neuron_backward): the NumPy reference against
the formulas and float64 gradients, then the cuda backend against the reference (on a GPU or the
CPU emulator; tests/opcheck.py says how).

cuda bound, float32 against the float64 reference, every out= poisoned with NaN:
  |err| <= 1e-5 |ref| + 1e-6 (the magnitude of terms that cancel, if any); bit-equal to the
  float32 reference for the kinds without a transcendental (relu, abs, linear, ...)
"""
import warnings

import numpy as np
import pytest

from convnet.backend import numpy_neuron
from convnet.backend.numpy_neuron import (NEURON_KINDS, NEURON_PARAMS, neuron_backward,
                                          neuron_forward)
from gradcheck import check_op_grads
from opcheck import assert_close, assert_equal, cu, cuda_test, cupy, normal, poisoned, to_device


def away_from(x, points, gap=0.05):
    """Push entries of x that lie within `gap` of any point out to the gap."""
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap)
    return x


# kind -> (a, b, input generator keeping off kinks and domain edges)
CASES = {
    "ident": (0.0, 0.0, lambda r, s: r.standard_normal(s)),
    "relu": (0.0, 0.0, lambda r, s: away_from(r.standard_normal(s), [0.0])),
    "logistic": (0.0, 0.0, lambda r, s: 3 * r.standard_normal(s)),
    "tanh": (1.7159, 0.6667, lambda r, s: 2 * r.standard_normal(s)),
    "abs": (0.0, 0.0, lambda r, s: away_from(r.standard_normal(s), [0.0])),
    "softrelu": (0.0, 0.0, lambda r, s: 4 * r.standard_normal(s)),
    "brelu": (1.5, 0.0, lambda r, s: away_from(2 * r.standard_normal(s), [0.0, 1.5])),
    "drelu": (1.3, 0.0, lambda r, s: 2 * r.standard_normal(s)),
    "linear": (2.5, -0.75, lambda r, s: r.standard_normal(s)),
    "square": (0.0, 0.0, lambda r, s: r.standard_normal(s)),
    "sqrt": (0.0, 0.0, lambda r, s: r.uniform(0.2, 4.0, s)),
    "log": (1.5, 0.0, lambda r, s: r.uniform(-1.2, 3.0, s)),
}


def test_neuron_cases_cover_every_kind():
    assert set(CASES) == set(NEURON_KINDS)
    assert set(NEURON_PARAMS) <= set(NEURON_KINDS)
    assert NEURON_PARAMS["tanh"] == ("a", "b") and NEURON_PARAMS["brelu"] == ("a",)


@pytest.mark.parametrize("kind", NEURON_KINDS)
def test_neuron_backward_gradcheck(rng, kind):
    a, b, make = CASES[kind]
    x = make(rng, (int(rng.integers(1, 4)), int(rng.integers(1, 8)), 3))

    def fwd(x):
        return neuron_forward(x, kind, a, b)

    def bwd(dy):
        return [neuron_backward(x, fwd(x), dy, kind, a, b)]

    check_op_grads(fwd, bwd, [x], rng)


FORMULAS = {
    "ident": lambda x, a, b: x,
    "relu": lambda x, a, b: np.where(x > 0, x, 0.0),
    "logistic": lambda x, a, b: 1 / (1 + np.exp(-x)),
    "tanh": lambda x, a, b: a * np.tanh(b * x),
    "abs": lambda x, a, b: np.abs(x),
    "softrelu": lambda x, a, b: np.log(1 + np.exp(x)),
    "brelu": lambda x, a, b: np.clip(x, 0, a),
    "drelu": lambda x, a, b: x - a * np.tanh(x / a),
    "linear": lambda x, a, b: a * x + b,
    "square": lambda x, a, b: x ** 2,
    "sqrt": lambda x, a, b: x ** 0.5,
    "log": lambda x, a, b: np.log(a + x),
}


@pytest.mark.parametrize("kind", NEURON_KINDS)
def test_neuron_forward_matches_formula(rng, kind):
    a, b, make = CASES[kind]
    x = make(rng, (5, 7))
    np.testing.assert_allclose(neuron_forward(x, kind, a, b), FORMULAS[kind](x, a, b),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", NEURON_KINDS)
def test_neuron_keeps_float32(rng, kind):
    a, b, make = CASES[kind]
    x = make(rng, (4, 3)).astype(np.float32)
    y = neuron_forward(x, kind, np.float64(a), np.float64(b))
    dx = neuron_backward(x, y, np.ones_like(x), kind, np.float64(a), np.float64(b))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_allclose(y, FORMULAS[kind](x.astype(np.float64), a, b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_neuron_logistic_and_softrelu_stable_for_huge_inputs(dtype):
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        soft = neuron_forward(x, "softrelu")
        logistic = neuron_forward(x, "logistic")
        dsoft = neuron_backward(x, soft, np.ones_like(x), "softrelu")
    np.testing.assert_allclose(soft, [0.0, np.exp(-50.0), np.log(2.0), 50.0, 1000.0], rtol=1e-6)
    np.testing.assert_allclose(logistic, [0.0, np.exp(-50.0), 0.5, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(dsoft, logistic, rtol=1e-6)


def test_neuron_abs_gradient_sign_is_minus_one_at_zero():
    x = np.array([-2.0, 0.0, 3.0])
    dx = neuron_backward(x, np.abs(x), np.ones(3), "abs")
    np.testing.assert_array_equal(dx, [-1.0, -1.0, 1.0])


def test_neuron_relu_and_brelu_gradient_masks():
    x = np.array([-1.0, 0.5, 2.0, 3.0])
    relu_dx = neuron_backward(x, np.maximum(x, 0), np.full(4, 2.0), "relu")
    np.testing.assert_array_equal(relu_dx, [0, 2, 2, 2])
    y = neuron_forward(x, "brelu", a=2.5)
    np.testing.assert_array_equal(y, [0.0, 0.5, 2.0, 2.5])
    np.testing.assert_array_equal(neuron_backward(x, y, np.full(4, 2.0), "brelu", a=2.5),
                                  [0, 2, 2, 0])


def test_neuron_unknown_kind_lists_known_kinds():
    with pytest.raises(ValueError, match="unknown neuron kind 'swish'.*relu.*softrelu"):
        neuron_forward(np.ones(3), "swish")
    with pytest.raises(ValueError, match="neuron_backward"):
        neuron_backward(np.ones(3), np.ones(3), np.ones(3), "nrelu")


def test_neuron_rejects_bad_arguments():
    with pytest.raises(ValueError, match="drelu needs a > 0"):
        neuron_forward(np.ones(3), "drelu", a=0.0)
    with pytest.raises(ValueError, match="dy shape"):
        neuron_backward(np.ones(3), np.ones(3), np.ones(4), "relu")
    with pytest.raises(ValueError, match="float32 or float64"):
        neuron_forward(np.ones(3, dtype=np.int32), "relu")


# ----------------------------------------------------------------------------------------------
# the cuda backend

ELEMENTWISE_SHAPES = [(128, 4096), (1, 3), (129, 37), (7,), (2, 96, 13, 13)]
CUDA_NEURON_ARGS = {"tanh": (1.7159, 0.6667), "brelu": (6.0, 0.0), "drelu": (2.0, 0.0),
                 "linear": (1.5, -0.25), "log": (1.5, 0.0)}


def neuron_input(kind, a, shape, rng):
    """Inputs away from each kind's kinks and from where float32 loses the derivative."""
    if kind in ("relu", "abs"):
        x = rng.uniform(0.05, 3, shape) * rng.choice([-1, 1], shape)
    elif kind == "brelu":  # below 0, inside (0, a) and above a, in equal parts
        region = rng.integers(0, 3, shape)
        x = np.where(region == 0, rng.uniform(-2, -0.05, shape),
                     np.where(region == 1, rng.uniform(0.05, a - 0.05, shape),
                              rng.uniform(a + 0.05, a + 2, shape)))
    elif kind in ("logistic", "tanh", "softrelu", "drelu"):
        x = rng.uniform(-3, 3, shape)
    elif kind == "sqrt":
        x = rng.uniform(0.1, 4, shape)
    elif kind == "log":
        x = rng.uniform(-a + 0.1, 4, shape)
    else:
        x = rng.standard_normal(shape)
    return x.astype(np.float32)


def neuron_cancellation(kind, x, dy, a, b):
    """Magnitudes of the terms that cancel in each kind's float32 formula (forward, backward):
    there an error of a few float32 ulps of the terms is no fault of the kernel."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    zero = np.zeros_like(x)
    if kind == "drelu":  # x - a tanh(x / a) ~ x^3 / (3 a^2) for small x
        return np.abs(x), zero
    if kind == "linear":  # a x + b near -b / a
        return np.abs(a * x) + abs(b), zero
    if kind == "log":  # log(a + x) near a + x = 1
        return np.ones_like(x), zero
    if kind == "tanh":  # 1 - tanh(b x)^2 for |b x| large
        return zero, np.abs(dy * a * b) * np.tanh(b * x) ** 2
    return zero, zero


@cuda_test
@pytest.mark.parametrize("kind", numpy_neuron.NEURON_KINDS)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_neuron_forward_backward_match_reference(kind, shape, rng):
    """|err| <= 1e-5 |ref| + 1e-6 (the magnitude of terms that cancel, if any)."""
    a, b = CUDA_NEURON_ARGS.get(kind, (0.0, 0.0))
    misaligned = shape == (129, 37)
    x = neuron_input(kind, a, shape, rng)
    dy = normal(rng, shape)
    forward_terms, backward_terms = neuron_cancellation(kind, x, dy, a, b)
    x64 = x.astype(np.float64)
    y_ref = numpy_neuron.neuron_forward(x64, kind, a, b)
    y = cu.neuron_forward(to_device(x, misaligned), kind, a, b,
                          out=poisoned(shape, misaligned=misaligned))
    assert_close(y, y_ref, 1e-5, 1e-37 + 1e-6 * forward_terms, f"neuron_forward {kind}")
    y32 = numpy_neuron.neuron_forward(x, kind, a, b)
    dx_ref = numpy_neuron.neuron_backward(x64, y32.astype(np.float64), dy.astype(np.float64),
                                          kind, a, b)
    dx = cu.neuron_backward(to_device(x), to_device(y32), to_device(dy, misaligned), kind, a, b,
                            out=poisoned(shape))
    assert_close(dx, dx_ref, 1e-5, 1e-37 + 1e-6 * backward_terms, f"neuron_backward {kind}")
    if kind in ("ident", "relu", "abs", "brelu", "linear", "square"):  # no transcendental
        assert_equal(y, y32, f"neuron_forward {kind} vs float32 reference")
        assert_equal(dx, numpy_neuron.neuron_backward(x, y32, dy, kind, a, b),
                     f"neuron_backward {kind} vs float32 reference")


@cuda_test
def test_cuda_neuron_rejects_bad_arguments():
    x = cupy.zeros((2, 3), dtype=cupy.float32)
    with pytest.raises(ValueError, match="neuron_forward: unknown neuron kind"):
        cu.neuron_forward(x, "gelu")
    with pytest.raises(ValueError, match="neuron_forward: x must be float32"):
        cu.neuron_forward(x.astype(cupy.float64), "relu")
    with pytest.raises(ValueError, match="neuron_forward: x must be C-contiguous"):
        cu.neuron_forward(x.T, "relu")
    with pytest.raises(ValueError, match="neuron_forward: x must be a cupy.ndarray"):
        cu.neuron_forward(np.zeros((2, 3), np.float32), "relu")
    with pytest.raises(ValueError, match="neuron_forward: out has shape"):
        cu.neuron_forward(x, "relu", out=cupy.empty((3, 2), cupy.float32))
    with pytest.raises(ValueError, match="neuron_forward: out overlaps an input"):
        cu.neuron_forward(x, "relu", out=x)
    with pytest.raises(ValueError, match="neuron_backward: dy shape"):
        cu.neuron_backward(x, x, cupy.zeros((3, 2), cupy.float32), "relu")
