"""pytest for gpu_run.sh: stoppable by its `timeout`, and optionally with CuPy's pools off.

- SIGINT and SIGTERM raise KeyboardInterrupt, so pytest stops cleanly and still writes its
  junit XML when the step's time is up. (A shell that starts jobs in the background can leave
  SIGINT ignored in its children; Python then never installs its own handler.)
- --no-pools: CuPy's memory pools off, for compute-sanitizer. The pool hands out slices of
  large cudaMalloc blocks, so an access past the end of one array lands inside the block and
  memcheck cannot see it; with the pools off every array is its own allocation. (PyTorch's
  cache is turned off by PYTORCH_NO_CUDA_MEMORY_CACHING=1, which gpu_run.sh sets.)

    python benchmarks/run_pytest.py [--no-pools] PYTEST_ARGS...
"""
import signal
import sys


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    if argv[:1] == ["--no-pools"]:
        argv = argv[1:]
        try:
            import cupy

            cupy.cuda.set_allocator(None)
            cupy.cuda.set_pinned_memory_allocator(None)
            print("run_pytest: CuPy memory pools off", flush=True)
        except Exception as e:  # no CuPy: the tests that need it skip on their own
            print(f"run_pytest: CuPy pools left as they are ({type(e).__name__}: {e})",
                  flush=True)
    import pytest

    return pytest.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
