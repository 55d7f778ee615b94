import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh random generator per test, seeded from the test's name and time, printed on failure."""
    import time
    seed = int(time.time_ns() % (2**32))
    request.node.user_properties.append(("seed", seed))
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)
