"""The kernel emulator's CuPy stand-in (tools/kernel_emulator/cupy_standin): guard pages, NaN
poison, views and their lifetime, host/device mix-ups, devices, streams, OOM and peer copies.

The stand-in is imported under its own name for this module only: sys.path and sys.modules are
restored at once, so the rest of the session never sees a fake `cupy` (nor loses a real one).
Faults are provoked in child processes (a segfault ends the process).
"""
import gc
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

STANDIN = Path(__file__).resolve().parents[1] / "tools" / "kernel_emulator" / "cupy_standin"
ENV = {"CONVNET_EMU_GUARD": "mixed", "CONVNET_EMU_SEED": "0", "CONVNET_EMU_DEVICES": "2",
       "CONVNET_EMU_DEVICE_BYTES": str(2 << 30), "CONVNET_EMU_ALIGN": "0"}


def _ours(name):
    return name in ("cupy", "cupyx") or name.startswith(("cupy.", "cupyx."))


def _import_standin():
    saved_modules = {k: sys.modules.pop(k) for k in [k for k in sys.modules if _ours(k)]}
    saved_env = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    sys.path.insert(0, str(STANDIN))
    try:
        import cupy
        import cupyx
        return cupy, cupyx
    finally:
        sys.path.remove(str(STANDIN))
        for k in [k for k in sys.modules if _ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved_modules)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


cupy, cupyx = _import_standin()
emu, runtime = cupy._emu, cupy.cuda.runtime


@pytest.fixture(autouse=True)
def settings():
    """Each test starts on device 0 with the default settings and leaves them so."""
    saved = dict(emu.settings)
    runtime.setDevice(0)
    yield
    emu.configure(guard=saved["guard"], seed=saved["seed"], device_bytes=saved["device_bytes"],
                  align=saved["align"])
    for device in range(runtime.getDeviceCount()):
        emu.set_limit(device, 0)
    runtime.setDevice(0)


def test_the_rest_of_the_session_does_not_see_the_standin():
    assert str(STANDIN) not in sys.path
    assert sys.modules.get("cupy") is not cupy and sys.modules.get("cupyx") is not cupyx
    assert cupy.__version__.endswith("+convnet-emulator") and cupy.cuda.is_available()


# ---------------------------------------------------------------------------- memory

FAULT_SCRIPT = """
import ctypes, sys
sys.path.insert(0, {standin!r})
import cupy
a = cupy.empty(1000, cupy.float32)  # 4000 bytes, less than a page
first, end = a.data.ptr, a.data.ptr + a.nbytes
print(ctypes.c_float.from_address(first).value, ctypes.c_float.from_address(end - 4).value,
      flush=True)
ctypes.c_float.from_address(end if {guard!r} == "after" else first - 4).value
print("no fault", flush=True)
"""


@pytest.mark.parametrize("guard", ["after", "before"])
def test_one_element_past_an_allocation_faults(guard):
    env = {**os.environ, **ENV, "CONVNET_EMU_GUARD": guard}
    script = FAULT_SCRIPT.format(standin=str(STANDIN), guard=guard)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.split() == ["nan", "nan"], done.stdout + done.stderr  # inside: readable
    assert done.returncode in (-signal.SIGSEGV, -signal.SIGBUS), done.returncode


def test_allocations_sit_against_their_guard_page():
    for guard in ("after", "before"):
        emu.configure(guard=guard)
        for n in (1, 1000, 1025, 3 * emu.PAGE):
            a = cupy.empty(n, cupy.float32)
            edge = a.data.ptr + a.nbytes if guard == "after" else a.data.ptr
            assert edge % emu.PAGE == 0, (guard, n)
    emu.configure(guard="mixed", seed=3)
    arrays = [cupy.empty(10) for _ in range(40)]
    assert {emu.find(a.data.ptr)[3] for a in arrays} == {"after", "before"}
    emu.configure(guard="after", align=256)
    assert cupy.empty(1001, cupy.float32).data.ptr % 256 == 0


def test_new_memory_is_nan_poisoned_and_filled_only_when_asked():
    a = cupy.empty((3, 5), cupy.float32)
    assert np.isnan(a.get()).all()
    assert list(cupy.empty(8, cupy.uint8).get()) == [0, 0, 0xC0, 0x7F] * 2
    assert (cupy.zeros(7).get() == 0).all() and (cupy.ones((2, 2), np.int32).get() == 1).all()
    assert (cupy.full(3, 2.5, cupy.float32).get() == 2.5).all()
    assert np.isnan(cupy.empty_like(cupy.zeros(4, cupy.float32)).get()).all()
    assert np.isnan(np.empty_like(cupy.zeros(4, np.float32)).get()).all()  # __array_function__
    assert np.isnan(cupyx.empty_pinned((2, 3), np.float32)).all()


def _mapped(ptr):
    with open("/proc/self/maps") as maps:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= ptr < hi:
                return True
    return False


def test_views_share_memory_keep_it_alive_and_the_last_one_unmaps_it():
    gc.collect()
    before = emu.live_allocations()
    a = cupy.arange(12, dtype=cupy.float32)
    ptr = a.data.ptr
    v = a[1:].reshape(1, 11)[:, ::2]
    t = a.reshape(3, 4).T
    assert emu.live_allocations() == before + 1
    assert v.base is a and t.base is a and a.base is None
    assert a.flags.owndata and not v.flags.owndata and not t.flags.c_contiguous
    v[0, 0] = -1
    t[3, 2] = 99  # a[2 * 4 + 3]
    assert a.get()[1] == -1 and a.get()[11] == 99
    b = a + 1  # a computation: a new allocation
    assert b.base is None and b.data.ptr != ptr and emu.live_allocations() == before + 2
    del a, b
    assert emu.live_allocations() == before + 1 and t.get()[3, 2] == 99
    del t
    assert emu.find(ptr) is not None and v.get()[0, 0] == -1
    del v
    gc.collect()
    assert emu.live_allocations() == before and emu.find(ptr) is None
    if os.path.exists("/proc/self/maps"):
        assert not _mapped(ptr)


def test_the_pointer_of_base_1_is_4_bytes_past_base():
    base = cupy.empty(9, cupy.float32)
    view = base[1:]
    assert view.data.ptr == base.data.ptr + 4 and view.flags.c_contiguous
    assert view.data.device_id == 0 and view.base is base
    assert cupy.empty(0).data.ptr == 0  # as CuPy's zero-byte allocations


def test_out_of_memory_raises_cupys_error_before_allocating():
    emu.configure(device_bytes=1 << 20)
    a = cupy.empty(200_000, cupy.float32)
    live = emu.live_allocations()
    with pytest.raises(cupy.cuda.memory.OutOfMemoryError,
                       match=r"^Out of memory allocating 400,000 bytes \(allocated so far: "
                             r"800,000 bytes\)\.$") as caught:
        cupy.empty(100_000, cupy.float32)
    assert isinstance(caught.value, MemoryError) and emu.live_allocations() == live
    assert "cupy" in type(caught.value).__module__  # what convnet.apps.cli looks for
    with cupy.cuda.Device(1):  # the limit is per device
        cupy.empty(100_000, cupy.float32)
    del a
    cupy.empty(100_000, cupy.float32)
    pool = cupy.get_default_memory_pool()
    pool.set_limit(size=1000)
    assert pool.get_limit() == 1000 and pool.used_bytes() == 0
    with pytest.raises(MemoryError, match=r"2,000 bytes .*limit set to: 1,000 bytes\)\.$"):
        cupy.zeros(500, cupy.float32)


# ---------------------------------------------------------------------------- arrays and NumPy

def test_numpy_ufuncs_and_functions_give_standin_arrays():
    x = cupy.asarray(np.arange(6, dtype=np.float32) - 2)
    for r in (np.exp(x), np.add(x, 1), x * np.float32(2), np.sum(x), np.add.reduce(x),
              np.concatenate([x, x]), np.where(x > 0, x, 0), cupy.tanh(x), cupy.sqrt(abs(x)),
              cupy.linalg.norm(x), x.mean(), x[2], np.broadcast_to(x, (2, 6))):
        assert isinstance(r, cupy.ndarray), type(r)
    assert np.maximum(x, 0, out=x) is x and x.get().tolist() == [0, 0, 0, 1, 2, 3]
    assert float(x.sum()) == 6.0 and int(x[5]) == 3 and bool(x.any())
    assert isinstance(cupy.array_equal(x, x), cupy.ndarray) and bool(cupy.array_equal(x, x))
    assert cupy.get_array_module(x) is cupy and cupy.get_array_module(x.get()) is np


def test_host_device_mix_ups_raise_type_error():
    x = cupy.zeros(3, cupy.float32)
    h = np.zeros(3, np.float32)
    assert not isinstance(x, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)
    for mix in (lambda: np.array(x), lambda: x + h, lambda: h + x, lambda: np.add(x, h),
                lambda: cupy.exp(h), lambda: np.concatenate([x, h]), lambda: x.__iadd__(h),
                lambda: cupy.ascontiguousarray(h), lambda: x.set(x)):
        with pytest.raises(TypeError):
            mix()
    x[...] = h + 1  # NumPy values and indices are allowed, as by CuPy
    assert x[np.array([0, 2])].get().tolist() == [1, 1]
    assert (x + 1).get().tolist() == [2, 2, 2] and (2 * x).dtype == np.float32


def test_array_surface():
    a = cupy.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert (a.shape, a.size, a.ndim, a.nbytes, a.itemsize, a.strides) == \
        ((3, 4), 12, 2, 48, 4, (16, 4))
    assert len(a) == 3 and [r.shape for r in a] == [(4,)] * 3
    assert a.astype(np.int64).dtype == np.int64 and a.astype(np.float32, copy=False) is a
    assert cupy.ascontiguousarray(a) is a and cupy.ascontiguousarray(a.T).flags.c_contiguous
    c = a.copy()
    c.fill(7)
    assert a.get()[0, 0] == 0 and (c.get() == 7).all()
    idx = cupy.asarray(np.array([2, 0]))
    assert a[idx, 1].get().tolist() == [9, 1] and a[a > 9].get().tolist() == [10, 11]
    a[idx] = cupy.zeros(4, cupy.float32)
    a[0, 1] = a[1, 1]
    assert a.get()[:, 1].tolist() == [5, 5, 0]
    h = np.ones((3, 4), np.float32)
    a.set(h)
    assert (a.get() == 1).all() and a.get(out=np.empty((3, 4), np.float32)).sum() == 12
    assert repr(cupy.arange(3)) == "array([0, 1, 2])"
    assert cupy.asnumpy(a[0, 0][...]).shape == () and a[0, 0].base is a
    order = cupy.argsort(cupy.asarray(np.zeros(50)))  # stable, as CuPy's radix sort
    assert order.get().tolist() == list(range(50))


def test_kernels_written_in_python_are_refused():
    for make in (cupy.ElementwiseKernel, cupy.RawKernel):
        with pytest.raises(NotImplementedError, match="emulator.*csrc/"):
            make("float32 x", "float32 y", "y = x", "copy")


# ---------------------------------------------------------------------------- devices, streams

def test_device_ids_follow_device_contexts():
    a = cupy.zeros(2)
    with cupy.cuda.Device(1) as dev:
        b = cupy.ones(2)
        assert dev.id == cupy.cuda.Device().id == runtime.getDevice() == 1
        with cupy.cuda.Device(0):
            assert cupy.empty(1).device.id == 0
        assert cupy.empty(1).device.id == 1
    assert (a.device.id, b.device.id, b.data.device_id, b[1:].device.id) == (0, 1, 1, 1)
    with pytest.warns(cupy._util.PerformanceWarning, match=r"resides \(1\).*current device \(0\)"):
        c = b + 1  # computed on the current device, as CuPy does
    assert c.device.id == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cupy.asarray(b).device.id == 0  # asarray copies across devices
    cupy.cuda.Device(1).use()
    assert runtime.getDevice() == 1
    with pytest.raises(runtime.CUDARuntimeError) as caught:
        cupy.cuda.Device(2).use()
    assert caught.value.status == 101 and runtime.getDeviceCount() == 2


def test_streams_and_events_are_ordered_no_ops_with_cupys_checks():
    s = cupy.cuda.Stream(non_blocking=True)
    t = cupy.cuda.Stream()
    assert cupy.cuda.Stream.null.ptr == 0 and 0 != s.ptr != t.ptr != 0
    assert cupy.cuda.get_current_stream() == cupy.cuda.Stream.null
    with s:
        assert cupy.cuda.get_current_stream() is s
        event = cupy.cuda.get_current_stream().record()
    assert cupy.cuda.get_current_stream() == cupy.cuda.Stream.null
    t.wait_event(event)
    assert event.done and s.done and event.query()
    event.synchronize()
    s.synchronize()
    with pytest.raises(NotImplementedError, match="cannot measure"):
        cupy.cuda.get_elapsed_time(event, event)
    with cupy.cuda.Device(1):
        with pytest.raises(RuntimeError, match=r"created on \(0\).*current device \(1\)"):
            with s:
                pass
        other = cupy.cuda.Event(disable_timing=True)
    with pytest.raises(runtime.CUDARuntimeError, match="cudaErrorInvalidResourceHandle"):
        s.record(other)


def test_peer_copies_move_bytes_and_check_their_pointers():
    x = cupy.asarray(np.arange(10, dtype=np.float32))
    with cupy.cuda.Device(1):
        y = cupy.empty(10, cupy.float32)
        stream = cupy.cuda.Stream(non_blocking=True)
    runtime.memcpyPeerAsync(y.data.ptr, 1, x.data.ptr, 0, x.nbytes, stream.ptr)
    assert y.get().tolist() == list(range(10))
    for bad in ((y.data.ptr, 0, x.data.ptr, 0, x.nbytes),      # y is on device 1
                (y.data.ptr, 1, x.data.ptr, 0, x.nbytes + 4)):  # past the end of both
        with pytest.raises(runtime.CUDARuntimeError, match="cudaErrorInvalidValue"):
            runtime.memcpyPeerAsync(*bad, stream.ptr)
    h = np.full(10, 5, np.float32)
    runtime.memcpy(x.data.ptr, h.ctypes.data, h.nbytes, runtime.memcpyHostToDevice)
    assert (x.get() == 5).all()
    with pytest.raises(runtime.CUDARuntimeError):
        runtime.memcpy(h.ctypes.data, x.data.ptr, h.nbytes, runtime.memcpyHostToDevice)
    with cupy.cuda.Device(1):
        runtime.deviceEnablePeerAccess(0)
        with pytest.raises(runtime.CUDARuntimeError) as caught:
            runtime.deviceEnablePeerAccess(0)
        assert caught.value.status == 704 and runtime.deviceCanAccessPeer(1, 0) == 1
        runtime.deviceDisablePeerAccess(0)


def test_host_register_is_tracked():
    pinned = cupyx.empty_pinned((4, 4), np.uint8)
    runtime.hostRegister(pinned.ctypes.data, pinned.nbytes, 0)
    with pytest.raises(runtime.CUDARuntimeError, match="AlreadyRegistered"):
        runtime.hostRegister(pinned.ctypes.data + 4, 4, 0)
    runtime.hostUnregister(pinned.ctypes.data)
    with pytest.raises(runtime.CUDARuntimeError, match="NotRegistered") as caught:
        runtime.hostUnregister(pinned.ctypes.data)
    assert caught.value.status == 713
    device = cupy.empty(4)
    with pytest.raises(runtime.CUDARuntimeError):  # device memory is not host memory
        runtime.hostRegister(device.data.ptr, device.nbytes, 0)
