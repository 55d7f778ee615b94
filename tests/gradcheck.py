"""Float64 central-difference gradient checks shared by the op and net tests."""
import numpy as np

from convnet.engine.gradcheck import numeric_grad  # noqa: F401  (re-exported for the op tests)


def assert_grad_close(analytic, numeric, rtol=1e-5, atol=1e-7):
    """Compare where the numeric gradient was computed; report the worst entry."""
    mask = ~np.isnan(numeric)
    a, n = np.asarray(analytic)[mask], numeric[mask]
    assert a.size > 0, "no entries were checked"
    err = np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), atol / rtol)
    worst = int(np.argmax(err))
    assert err[worst] <= rtol, (
        f"gradient mismatch: analytic {a[worst]!r} numeric {n[worst]!r} rel err {err[worst]:.3g}")


def check_op_grads(forward, backward, inputs, rng, max_entries=60, rtol=1e-5):
    """Check every input gradient of an op through the scalar loss sum(forward(*inputs) * R).

    forward(*inputs) -> y; backward(R) -> list of gradients, one per entry of `inputs`
    (None to skip one). Inputs must be float64 arrays.
    """
    y = forward(*inputs)
    proj = rng.standard_normal(np.shape(y))
    analytic = backward(proj)
    for x, g in zip(inputs, analytic):
        if g is None:
            continue
        numeric = numeric_grad(lambda: float(np.sum(forward(*inputs) * proj)), x,
                               max_entries=max_entries, rng=rng)
        assert_grad_close(g, numeric, rtol=rtol)
