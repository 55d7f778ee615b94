"""cupy._util of the emulator: the warning CuPy gives for an array used on another device."""


class PerformanceWarning(RuntimeWarning):
    """An array of another device used in a computation (CuPy enables peer access and warns)."""
