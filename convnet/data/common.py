"""What every provider shares: DataError, cuda-convnet's batch ranges (--train-range,
--test-range), the batch-size check and the number of multiview test views."""
import numpy as np

NUM_MULTIVIEW = 10  # 4 corners + centre, and their mirror images


class DataError(Exception):
    """A data set is missing, truncated, malformed or unsafe. The message names the file."""


def parse_range(text):
    """Batch numbers from "a-b", "a", "a,b,c" (or a mix: "1-3,5"), an int, or a list of ints."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        numbers = [int(text)]
    elif isinstance(text, (list, tuple)):
        if not text or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                               for v in text):
            raise ValueError(f"batch range {text!r}: expected a non-empty list of integers")
        numbers = [int(v) for v in text]
    elif isinstance(text, str):
        numbers = []
        for part in text.replace(" ", "").split(","):
            first, dash, last = part.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise ValueError(f"batch range {text!r}: expected 'a-b', 'a' or 'a,b,c' "
                                 f"with positive integers, got {part!r}")
            lo, hi = int(first), int(last) if dash else int(first)
            if hi < lo:
                raise ValueError(f"batch range {text!r}: {part!r} ends before it starts")
            numbers.extend(range(lo, hi + 1))
    else:
        raise ValueError(f"batch range {text!r}: expected a string or a list of integers")
    for n in numbers:
        if n < 1:
            raise ValueError(f"batch range {text!r}: batch numbers start at 1, got {n}")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"batch range {text!r}: a batch appears more than once")
    return numbers



def check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)

