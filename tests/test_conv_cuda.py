"""What only the cuda backend's conv and local have, against the NumPy reference on a GPU or on
the CPU emulator (batch 4 for the small nets, AlexNet's layers skipped there; what it cannot show:
tests/opcheck.py): AlexNet's and the small nets' layers, random shapes, the named
algorithms (algo=, Winograd), streams, empty batches, offset views and argument checks. The case
list both backends run, its bound and its helpers: tests/test_conv.py.
"""
import numpy as np
import pytest

import convnet

pytestmark = pytest.mark.cuda

if not convnet.cuda_available():
    pytest.skip("needs convnet built with CUDA, CuPy and a GPU", allow_module_level=True)

import cupy  # noqa: E402

from convnet.backend import algos, cuda_conv, numpy_conv  # noqa: E402
from conftest import SMALL_SHAPES  # noqa: E402
from opcheck import relative_error  # noqa: E402
from test_conv import (AWKWARD, PASSES, REL_TOL, Case, check_against_reference,  # noqa: E402
                       op_arguments, random_inputs)


def emulator_batch(cases, n=4):
    """The same layers at batch n under CONVNET_SMALL_SHAPES (the emulator): the tiles over
    the output positions still run partly full; only the batch is smaller."""
    return {k: c._replace(n=min(c.n, n)) for k, c in cases.items()} if SMALL_SHAPES else cases


# AlexNet's five conv layers at batch 128 (227x227 input, two towers as groups=2).
ALEXNET = {
    "conv1": Case(128, 3, 227, 227, 96, 11, 4, 0, 1),
    "conv2": Case(128, 96, 27, 27, 256, 5, 1, 2, 2),
    "conv3": Case(128, 256, 13, 13, 384, 3, 1, 1, 1),
    "conv4": Case(128, 384, 13, 13, 384, 3, 1, 1, 2),
    "conv5": Case(128, 384, 13, 13, 256, 3, 1, 1, 2),
}

# The small nets of layers/: Fashion-MNIST, CIFAR-10, and the conv-local CIFAR net's local layers.
SMALL_NETS = {
    "fashion_conv1": Case(128, 1, 28, 28, 32, 5, 1, 2, 1),
    "fashion_conv2": Case(128, 32, 14, 14, 64, 5, 1, 2, 1),
    "cifar_conv1": Case(128, 3, 32, 32, 64, 5, 1, 2, 1),
}
LOCAL_NETS = {
    "cifar_local3": Case(128, 64, 8, 8, 64, 3, 1, 1, 1),
    "cifar_local4": Case(128, 64, 8, 8, 32, 3, 1, 1, 1),
}
SMALL_NETS, LOCAL_NETS = emulator_batch(SMALL_NETS), emulator_batch(LOCAL_NETS)
LONG_REDUCTION = Case(16 if SMALL_SHAPES else 64, 8, 20, 20, 240, 3, 1, 1, 2)


# ----------------------------------------------------------------------------------------------
# against the reference


@pytest.mark.big
@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("layer", sorted(ALEXNET))
def test_conv_alexnet_layers(rng, layer, pass_):
    check_against_reference(rng, "conv", pass_, ALEXNET[layer], ref_dtype=np.float32)


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("net", sorted(SMALL_NETS))
def test_conv_small_nets(rng, net, pass_):
    check_against_reference(rng, "conv", pass_, SMALL_NETS[net])


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("layer", sorted(LOCAL_NETS))
def test_local_cifar_layers(rng, layer, pass_):
    check_against_reference(rng, "local", pass_, LOCAL_NETS[layer])


def random_case(rng):
    """A small random configuration: any channels, filters, filter size, stride and padding."""
    groups = int(rng.integers(1, 4))
    fs = int(rng.integers(1, 8))
    padding = int(rng.integers(0, 4))
    least = max(1, fs - 2 * padding)
    return Case(n=int(rng.integers(1, 7)), c=groups * int(rng.integers(1, 10)),
                h=int(rng.integers(least, least + 12)), w=int(rng.integers(least, least + 12)),
                f=groups * int(rng.integers(1, 41)), fs=fs, stride=int(rng.integers(1, 5)),
                padding=padding, groups=groups)


@pytest.mark.parametrize("kind", ["conv", "local"])
def test_conv_and_local_random_shapes(rng, kind):
    for _ in range(12):
        case = random_case(rng)
        for pass_ in PASSES:
            check_against_reference(rng, kind, pass_, case)


# ----------------------------------------------------------------------------------------------
# behaviour beyond the numbers


def test_conv_backward_filter_is_deterministic(rng):
    """The split-K reduction adds the splits in a fixed order: identical bits on every call."""
    case = SMALL_NETS["fashion_conv2"]
    x, _, dy = random_inputs(rng, case, local=False)
    x, dy = cupy.asarray(x), cupy.asarray(dy)
    first = cuda_conv.conv_backward_filter(x, dy, case.fs, case.stride, case.padding, case.groups)
    for _ in range(3):
        again = cuda_conv.conv_backward_filter(x, dy, case.fs, case.stride, case.padding,
                                               case.groups)
        assert cupy.array_equal(first, again)


BWDF_VARIANT_CASES = {**SMALL_NETS, "groups2_5x5": AWKWARD["groups2_5x5"],
                      "filters_65_per_group": AWKWARD["filters_65_per_group"],
                      "channels3_11x11_stride4_ceil": AWKWARD["channels3_11x11_stride4_ceil"],
                      "long_reduction_groups2": LONG_REDUCTION}


@pytest.mark.parametrize("algo", ["gemm", "gemm_dy_along_f", "gemm_dy_along_f_fill"])
@pytest.mark.parametrize("shape", sorted(BWDF_VARIANT_CASES))
def test_conv_backward_filter_algorithms(rng, algo, shape):
    """Every backward-filter GEMM algorithm against the reference; their split counts differ,
    and `gemm` loads dy along the reduction."""
    check_against_reference(rng, "conv", "backward_filter", BWDF_VARIANT_CASES[shape], algo=algo)


WINOGRAD_CASES = {**SMALL_NETS, "alexnet_conv3_batch8": ALEXNET["conv3"]._replace(n=8),
                  "alexnet_conv4_batch8": ALEXNET["conv4"]._replace(n=8),
                  "batch1": AWKWARD["batch1"], "channels17": AWKWARD["channels17"],
                  "groups2_5x5": AWKWARD["groups2_5x5"], "groups4": AWKWARD["groups4"],
                  "padding0": AWKWARD["padding0"], "padding3": AWKWARD["padding3"],
                  "filters_65_per_group": AWKWARD["filters_65_per_group"],
                  "filter_covers_image": AWKWARD["filter_covers_image"],
                  "stride2_is_refused": AWKWARD["padding2"],
                  "padding_past_filter": Case(2, 4, 6, 7, 5, 3, 1, 3, 1),
                  "long_reduction_groups2": LONG_REDUCTION}


def conv_shape(case):
    """The ConvShape tuple of a case (convnet.backend.algos.SHAPE_FIELDS)."""
    return (case.n, case.c, case.h, case.w, case.f, case.fs, *case.out_size(), case.stride,
            case.padding, case.groups)


@pytest.mark.parametrize("algo", ["winograd2", "winograd4"])
@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("shape", [pytest.param(name, marks=pytest.mark.big)
                                   if name.startswith("alexnet") else name
                                   for name in sorted(WINOGRAD_CASES)])
def test_conv_winograd(rng, algo, pass_, shape):
    """algo=winograd2|4 against the reference, within the same bound, where the kernels say it
    can run (stride 1, alpha = m + fs - 1 <= 6, and for backward data padding <= fs - 1);
    elsewhere a ValueError saying why."""
    case = WINOGRAD_CASES[shape]
    op = f"conv_{pass_}"
    if algo in algos.supported(op, conv_shape(case)):
        check_against_reference(rng, "conv", pass_, case, algo=algo)
        return
    assert case.stride != 1 or int(algo[-1]) + case.fs - 1 > 6 or (
        pass_ == "backward_data" and case.padding > case.fs - 1), f"{op} {case} refused"
    with pytest.raises(ValueError, match=f"{op}: algo {algo}: Winograd needs"):
        check_against_reference(rng, "conv", pass_, case, algo=algo)


@pytest.mark.parametrize("op", ["conv_forward", "conv_backward_filter"])
def test_conv_rejects_an_unknown_algorithm(rng, op):
    case = AWKWARD["batch1"]
    x, w, dy = (cupy.asarray(a) for a in random_inputs(rng, case, local=False))
    with pytest.raises(ValueError, match=f"{op}: unknown algo 'fastest'"):
        if op == "conv_forward":
            cuda_conv.conv_forward(x, w, case.stride, case.padding, case.groups, algo="fastest")
        else:
            cuda_conv.conv_backward_filter(x, dy, case.fs, case.stride, case.padding, case.groups,
                                           algo="fastest")


@pytest.mark.parametrize("n", [2, 0], ids=["batch2", "empty_batch"])
@pytest.mark.parametrize("pass_", PASSES)
def test_algorithms_a_pass_lacks_are_refused(rng, pass_, n):
    """Only backward filter has the dy-along-f GEMMs; local has only gemm."""
    case = AWKWARD["batch1"]._replace(n=n)
    for kind, algo in (("local", "winograd2"), ("conv", "gemm_dy_along_f")):
        if (kind, pass_) == ("conv", "backward_filter"):
            continue
        arrays, size_arg = op_arguments(case, pass_, *random_inputs(rng, case, kind == "local"))
        with pytest.raises(ValueError, match=f"{kind}_{pass_}: algo {algo}: only"):
            getattr(cuda_conv, f"{kind}_{pass_}")(*(cupy.asarray(a) for a in arrays), *size_arg,
                                                  case.stride, case.padding, case.groups,
                                                  algo=algo)


@pytest.mark.parametrize("kind", ["conv", "local"])
def test_conv_and_local_run_on_the_current_stream(rng, kind):
    """On a non-blocking side stream, the results are ready after that stream synchronizes."""
    case = Case(16, 8, 12, 12, 24, 3, 1, 1, 2)
    x, w, dy = random_inputs(rng, case, local=kind == "local")
    geometry = (case.stride, case.padding, case.groups)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        xd, wd, dyd = cupy.asarray(x), cupy.asarray(w), cupy.asarray(dy)
        y = getattr(cuda_conv, f"{kind}_forward")(xd, wd, *geometry)
        dx = getattr(cuda_conv, f"{kind}_backward_data")(dyd, wd, (case.h, case.w), *geometry)
        dw = getattr(cuda_conv, f"{kind}_backward_filter")(xd, dyd, case.fs, *geometry)
    stream.synchronize()
    x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    ref = numpy_conv
    assert relative_error(cupy.asnumpy(y), getattr(ref, f"{kind}_forward")(
        x64, w64, *geometry)) < REL_TOL
    assert relative_error(cupy.asnumpy(dx), getattr(ref, f"{kind}_backward_data")(
        dy64, w64, (case.h, case.w), *geometry)) < REL_TOL
    assert relative_error(cupy.asnumpy(dw), getattr(ref, f"{kind}_backward_filter")(
        x64, dy64, case.fs, *geometry)) < REL_TOL


def test_conv_forward_allocates_its_output_and_accepts_offset_views(rng):
    """Without out= the result is a new float32 array; inputs may start anywhere in memory
    (a contiguous slice of a larger array: no alignment assumption beyond float32)."""
    case = AWKWARD["odd_rectangular"]
    x, w, _ = random_inputs(rng, case, local=False)
    x_big = cupy.asarray(np.concatenate([x[:1], x]))
    x_view = x_big[1:]
    assert x_view.flags.c_contiguous and x_view.data.ptr % 16 != 0
    y = cuda_conv.conv_forward(x_view, cupy.asarray(w), case.stride, case.padding, case.groups)
    assert y.dtype == cupy.float32 and y.shape == (case.n, case.f, *case.out_size())
    want = numpy_conv.conv_forward(x.astype(np.float64), w.astype(np.float64), case.stride,
                                   case.padding, case.groups)
    assert relative_error(cupy.asnumpy(y), want) < REL_TOL


@pytest.mark.parametrize("kind", ["conv", "local"])
def test_conv_and_local_empty_batch(kind):
    """A batch of 0 images: empty activations and an all-zero weight gradient, as the reference."""
    case = Case(0, 4, 6, 6, 5, 3, 1, 1, 1)
    x, w, dy = random_inputs(np.random.default_rng(0), case, local=kind == "local")
    geometry = (case.stride, case.padding, case.groups)
    y = getattr(cuda_conv, f"{kind}_forward")(cupy.asarray(x), cupy.asarray(w), *geometry)
    assert y.shape == (0, case.f, *case.out_size())
    dw = getattr(cuda_conv, f"{kind}_backward_filter")(
        cupy.asarray(x), cupy.asarray(dy), case.fs, *geometry,
        out=cupy.full(w.shape, np.nan, dtype=cupy.float32))
    assert dw.shape == w.shape and not cupy.any(dw)


def bad_calls():
    """(op name, thunk) pairs that must raise ValueError naming the op."""
    x = cupy.ones((2, 4, 6, 6), dtype=cupy.float32)
    w = cupy.ones((6, 2, 3, 3), dtype=cupy.float32)
    dy = cupy.ones((2, 6, 6, 6), dtype=cupy.float32)
    wl = cupy.ones((6, 6, 6, 2, 3, 3), dtype=cupy.float32)
    shared = cupy.ones(1000, dtype=cupy.float32)
    x_in_shared, y_overlapping_x = shared[:288].reshape(x.shape), shared[100:532].reshape(dy.shape)
    c = cuda_conv
    return [
        ("conv_forward", lambda: c.conv_forward(x.astype(cupy.float64), w, 1, 1, 2)),
        ("conv_forward", lambda: c.conv_forward(cupy.asnumpy(x), w, 1, 1, 2)),
        ("conv_forward", lambda: c.conv_forward(x[:, :, :, ::2], w, 1, 1, 2)),
        ("conv_forward", lambda: c.conv_forward(x, w, 1, 1, 3)),
        ("conv_forward", lambda: c.conv_forward(x, w, 0, 1, 2)),
        ("conv_forward", lambda: c.conv_forward(x, w, 1, 1, 2, out=cupy.empty((2, 6, 5, 6),
                                                                              cupy.float32))),
        ("conv_forward", lambda: c.conv_forward(x, w, 1, 1, 2, out=cupy.empty((2, 6, 6, 6),
                                                                              cupy.float64))),
        ("conv_forward", lambda: c.conv_forward(x_in_shared, w, 1, 1, 2, out=y_overlapping_x)),
        ("conv_backward_data", lambda: c.conv_backward_data(dy, w, (7, 6), 1, 1, 2)),
        ("conv_backward_filter", lambda: c.conv_backward_filter(x, dy, 3, 1, 1, 4)),
        ("conv_backward_filter", lambda: c.conv_backward_filter(x, dy[:1], 3, 1, 1, 2)),
        ("local_forward", lambda: c.local_forward(x, wl[:5], 1, 1, 2)),
        ("local_forward", lambda: c.local_forward(x, w, 1, 1, 2)),
        ("local_backward_data", lambda: c.local_backward_data(dy, wl, (6, 6), 2, 1, 2)),
        ("local_backward_filter", lambda: c.local_backward_filter(x, dy, 9, 1, 1, 2)),
    ]


def test_conv_and_local_reject_bad_arguments():
    for op, call in bad_calls():
        with pytest.raises(ValueError, match=op):
            call()
