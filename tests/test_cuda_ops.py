"""CUDA ops (cuda_ops.py -> convnet._C) against the NumPy reference, on a GPU, or on the CPU
emulator (tools/kernel_emulator/run.py; CI): the same tests, with `big` cases skipped there.
What the emulator cannot show, so only a GPU run of these tests can: timing; the GPU compiler's
own output (tools/sass_lint.py guards one known miscompile and spills); races between blocks or
warps running at once; stream and event ordering (streams are no-ops there); real peer copies,
pinned memory and the driver; the GPU's own rounding in expf, tanhf and the like.

Inputs are random (the `rng` fixture: a fresh seed per run) over AlexNet's shapes and awkward
ones (batch 1 and 129, odd sizes, channels not a multiple of 16, rectangular images, pointers
off 16-byte alignment). Every output buffer is NaN-poisoned before the call, so an element a
kernel never writes fails the comparison.

Bounds, float32 against the float64 reference:
  element-wise ops              |err| <= 1e-5 |ref|   (bit-equal to the float32 reference where
                                                       the kernel rounds as it does: relu, abs,
                                                       linear, bias_forward, dropout, sgd, ...)
  reductions (bias_backward, sum2, softmax rows, maxnorm, fc)
                                |err| <= 1e-4 |ref| + 1e-5 * (the same sum over |terms|)
  dropout_mask                  equal to the reference bit for bit
  random_normal                 within one float32 ulp of the reference (Box-Muller in float64)
"""
import numpy as np
import pytest

import convnet

pytestmark = pytest.mark.cuda

if not convnet.cuda_available():
    pytest.skip("needs a GPU, CuPy and convnet._C built with CUDA", allow_module_level=True)

import cupy  # noqa: E402

from convnet.backend import cuda_ops as cu  # noqa: E402
from convnet.backend import numpy_cost, numpy_dropout, numpy_neuron  # noqa: E402
from convnet.backend import numpy_update, philox  # noqa: E402
from opcheck import assert_close, assert_equal, host, normal, poisoned, to_device  # noqa: E402


ELEMENTWISE_SHAPES = [(128, 4096), (1, 3), (129, 37), (7,), (2, 96, 13, 13)]


# ----------------------------------------------------------------------------------------------
# neurons

NEURON_PARAMS = {"tanh": (1.7159, 0.6667), "brelu": (6.0, 0.0), "drelu": (2.0, 0.0),
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


@pytest.mark.parametrize("kind", numpy_neuron.NEURON_KINDS)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_neuron_forward_backward_match_reference(kind, shape, rng):
    """|err| <= 1e-5 |ref| + 1e-6 (the magnitude of terms that cancel, if any)."""
    a, b = NEURON_PARAMS.get(kind, (0.0, 0.0))
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


def test_neuron_rejects_bad_arguments():
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


# ----------------------------------------------------------------------------------------------
# random numbers and dropout

STREAM_CASES = [  # shape, keep, seed, layer, step
    ((128, 4096), 0.5, 2012, 6, 0),
    ((1, 3), 0.9, 0, 0, 0),
    ((129, 37), 1.0, 2**40 + 17, 7, 123456),
    ((7,), 0.3, 2**64 - 1, 2**32 - 1, 2**32 - 1),
    ((3, 5, 11), 0.75, 123456789, 3, 99),
]


@pytest.mark.parametrize("shape,keep,seed,layer,step", STREAM_CASES)
def test_dropout_mask_equals_reference_bit_for_bit(shape, keep, seed, layer, step):
    want = philox.dropout_mask(shape, keep, seed, layer, step)
    for misaligned in (False, True):
        got = cu.dropout_mask(shape, keep, seed, layer, step,
                              out=poisoned(shape, np.uint8, misaligned))
        assert_equal(got, want, f"dropout_mask misaligned={misaligned}")
    if keep == 1.0:
        assert want.all()


@pytest.mark.parametrize("rows,width", [((0, 3), 9), ((3, 7), 9), ((5, 10), 9), ((1, 2), 6),
                                        ((64, 128), 4096)])
def test_offset_streams_are_those_rows_of_the_whole_draw(rows, width):
    """A data-parallel rank's rows r0..r1 (offset r0 x width): rows of 9 and 6 elements start
    at every place in a 4-word block; aligned and misaligned outputs."""
    r0, r1 = rows
    shape, offset = (r1 - r0, width), r0 * width
    want_mask = philox.dropout_mask(shape, 0.5, 77, 3, 9, offset)
    want_noise = philox.random_normal(shape, 77, 3, 9, offset)
    for misaligned in (False, True):
        got = cu.dropout_mask(shape, 0.5, 77, 3, 9, offset,
                              out=poisoned(shape, np.uint8, misaligned))
        assert_equal(got, want_mask, f"dropout_mask offset {offset} misaligned={misaligned}")
        noise = host(cu.random_normal(shape, 77, 3, 9, offset,
                                      out=poisoned(shape, misaligned=misaligned)))
        np.testing.assert_array_max_ulp(noise, want_noise, maxulp=1)


def test_dropout_mask_keeps_the_fraction_keep():
    mask = host(cu.dropout_mask((128, 4096), 0.5, 1, 2, 3))
    assert abs(mask.mean() - 0.5) < 0.01


@pytest.mark.parametrize("shape,keep,seed,layer,step", STREAM_CASES)
def test_random_normal_matches_reference_to_one_ulp(shape, keep, seed, layer, step):
    want = philox.random_normal(shape, seed, layer, step)
    got = host(cu.random_normal(shape, seed, layer, step, out=poisoned(shape)))
    assert not np.isnan(got).any()
    np.testing.assert_array_max_ulp(got, want, maxulp=1)
    assert (got == want).mean() >= 0.99


@pytest.mark.parametrize("shape,keep,seed,layer,step", STREAM_CASES)
def test_dropout_forward_backward_equal_reference(shape, keep, seed, layer, step, rng):
    mask = philox.dropout_mask(shape, keep, seed, layer, step)
    x, dy = normal(rng, shape), normal(rng, shape)
    misaligned = len(shape) == 1
    y = cu.dropout_forward(to_device(x, misaligned), to_device(mask), keep,
                           out=poisoned(shape, misaligned=misaligned))
    assert_equal(y, numpy_dropout.dropout_forward(x, mask, keep), "dropout_forward")
    dx = cu.dropout_backward(to_device(dy), to_device(mask, misaligned), keep,
                             out=poisoned(shape))
    assert_equal(dx, numpy_dropout.dropout_backward(dy, mask, keep), "dropout_backward")


def test_dropout_rejects_bad_arguments():
    x = cupy.zeros((2, 3), cupy.float32)
    with pytest.raises(ValueError, match="dropout_forward: mask must be uint8"):
        cu.dropout_forward(x, x, 0.5)
    with pytest.raises(ValueError, match="dropout_mask: keep"):
        cu.dropout_mask((2, 3), 0.0, 1, 2, 3)
    with pytest.raises(ValueError, match="random_normal: seed"):
        cu.random_normal((2, 3), -1, 2, 3)
    with pytest.raises(ValueError, match="dropout_mask: offset"):
        cu.dropout_mask((2, 3), 0.5, 1, 2, 3, -1)
    with pytest.raises(ValueError, match="random_normal: streams are limited"):
        cu.random_normal((2, 3), 1, 2, 3, 2**34)


# ----------------------------------------------------------------------------------------------
# softmax and costs

ROW_SHAPES = [(128, 1000), (1, 10), (129, 7), (3, 1), (5, 2000), (64, 33)]


def softmax_input(rng, shape):
    return normal(rng, shape, 3.0)


@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax_forward_backward_match_reference(shape, rng):
    x = softmax_input(rng, shape)
    p_ref = numpy_cost.softmax_forward(x.astype(np.float64))
    p = cu.softmax_forward(to_device(x), out=poisoned(shape))
    assert_close(p, p_ref, 1e-5, 1e-30, "softmax_forward")
    p32 = numpy_cost.softmax_forward(x)
    dp = normal(rng, shape)
    dx_ref = numpy_cost.softmax_backward(p32.astype(np.float64), dp.astype(np.float64))
    dot_abs = np.sum(np.abs(dp.astype(np.float64) * p32), axis=1, keepdims=True)
    dx = cu.softmax_backward(to_device(p32), to_device(dp), out=poisoned(shape))
    assert_close(dx, dx_ref, 1e-4, 1e-5 * p32 * (np.abs(dp) + dot_abs), "softmax_backward")


def labels_for(rng, n, k):
    return rng.integers(0, k, n)


@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("topk", [1, 5])
def test_logreg_forward_matches_reference(shape, topk, rng):
    p = numpy_cost.softmax_forward(softmax_input(rng, shape))
    if shape[1] >= 4:  # ties with the label's probability take their share (cuda-convnet)
        p[:, 1] = p[:, 0]
    labels = labels_for(rng, *shape)
    want = numpy_cost.logreg_forward(p, labels, topk)
    outs = tuple(poisoned((shape[0],)) for _ in range(3))
    got = cu.logreg_forward(to_device(p), cupy.asarray(labels), topk, out=outs)
    nll_ref = numpy_cost.logreg_forward(p.astype(np.float64), labels, topk)[0]
    assert_close(got[0], nll_ref, 1e-5, 1e-6, "logreg_forward nll")
    assert_equal(got[1], want[1], "logreg_forward wrong1")
    assert_equal(got[2], want[2], "logreg_forward wrongk")


@pytest.mark.parametrize("classes", [7, 1000])
def test_logreg_forward_splits_ties_as_the_reference(classes, rng):
    """Uniform rows: every class ties, (K - 1) / K wrong at top-1, (K - 5) / K at top-5."""
    p = np.full((3, classes), 1 / classes, np.float32)
    labels = labels_for(rng, 3, classes)
    want = numpy_cost.logreg_forward(p, labels, 5)
    got = cu.logreg_forward(to_device(p), cupy.asarray(labels), 5)
    assert_equal(got[1], want[1], "logreg_forward wrong1 with ties")
    assert_equal(got[2], want[2], "logreg_forward wrongk with ties")
    assert np.allclose(want[1], (classes - 1) / classes)


def test_logreg_forward_takes_any_integer_labels(rng):
    p = numpy_cost.softmax_forward(softmax_input(rng, (9, 6)))
    labels = labels_for(rng, 9, 6)
    for dtype in (np.int64, np.int32, np.uint8):
        got = cu.logreg_forward(to_device(p), cupy.asarray(labels.astype(dtype)))
        assert_equal(got[2], numpy_cost.logreg_forward(p, labels)[2], f"labels {dtype}")


def test_logreg_out_of_range_label_gives_nan(rng):
    p = numpy_cost.softmax_forward(softmax_input(rng, (3, 4)))
    labels = cupy.asarray([0, 4, 1])
    nll, _, _ = cu.logreg_forward(to_device(p), labels)
    assert np.isnan(host(nll)[1]) and not np.isnan(host(nll)[[0, 2]]).any()
    dx = host(cu.softmax_logreg_backward(to_device(p), labels, 1.0))
    assert np.isnan(dx[1]).all() and not np.isnan(dx[[0, 2]]).any()


@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_logreg_backward_and_fused_equal_reference(shape, rng):
    p = numpy_cost.softmax_forward(softmax_input(rng, shape))
    labels = labels_for(rng, *shape)
    scale = -1.0 / shape[0]
    got = cu.logreg_backward(to_device(p), cupy.asarray(labels), scale, out=poisoned(shape))
    assert_equal(got, numpy_cost.logreg_backward(p, labels, scale), "logreg_backward")
    got = cu.softmax_logreg_backward(to_device(p), cupy.asarray(labels), scale,
                                     out=poisoned(shape))
    assert_equal(got, numpy_cost.softmax_logreg_backward(p, labels, scale),
                 "softmax_logreg_backward")


@pytest.mark.parametrize("shape", [(128, 4096), (1, 3), (129, 10, 3, 3), (5, 7), (3, 50000),
                                   (2, 1)])
def test_sum2_forward_backward_match_reference(shape, rng):
    x = normal(rng, shape)
    want = numpy_cost.sum2_forward(x.astype(np.float64))
    for misaligned in (False, True):
        got = cu.sum2_forward(to_device(x, misaligned), out=poisoned((shape[0],), misaligned=True))
        assert_close(got, want, 1e-4, 1e-5 * want, f"sum2_forward misaligned={misaligned}")
    got = cu.sum2_backward(to_device(x), 0.25, out=poisoned(shape))
    assert_equal(got, numpy_cost.sum2_backward(x, 0.25), "sum2_backward")


# ----------------------------------------------------------------------------------------------
# update


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


def test_maxnorm_zero_wball_changes_nothing(rng):
    w = normal(rng, (6, 5))
    got = to_device(w)
    cu.maxnorm(got, 0.0, 1)
    assert_equal(got, w, "maxnorm wball=0")
