"""NumPy reference: the neurons of cuda-convnet (neuron_forward / neuron_backward)."""
import warnings

import numpy as np
import pytest

from convnet.backend.numpy_neuron import (NEURON_KINDS, NEURON_PARAMS, neuron_backward,
                                          neuron_forward)
from gradcheck import check_op_grads


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
