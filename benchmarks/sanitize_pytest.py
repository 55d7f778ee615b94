"""pytest, with CuPy's memory pools off, for running the cuda tests under compute-sanitizer.

CuPy's pool hands out slices of large cudaMalloc blocks, so an access past the end of one array
lands inside the block and memcheck cannot see it. With the pools off every array is its own
allocation. (PyTorch's cache is turned off by PYTORCH_NO_CUDA_MEMORY_CACHING=1, which
gpu_run.sh sets.) Arguments are pytest's.

    compute-sanitizer --tool memcheck python benchmarks/sanitize_pytest.py -m cuda tests
"""
import sys


def main(argv):
    try:
        import cupy

        cupy.cuda.set_allocator(None)
        cupy.cuda.set_pinned_memory_allocator(None)
        print("sanitize_pytest: CuPy memory pools off", flush=True)
    except Exception as e:  # no CuPy: the tests that need it skip on their own
        print(f"sanitize_pytest: CuPy pools left as they are ({type(e).__name__}: {e})",
              flush=True)
    import pytest

    return pytest.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
