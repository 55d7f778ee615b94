// Atomics. The emulator runs one thread at a time and switches only at barriers and warp
// collectives, so a plain read-modify-write is atomic here. (What this cannot show: a race that
// a missing atomic would cause between blocks or warps running at once on a GPU.)
#pragma once

template <class T> inline T atomicAdd(T* p, T v) { const T old = *p; *p = old + v; return old; }
template <class T> inline T atomicSub(T* p, T v) { const T old = *p; *p = old - v; return old; }
template <class T> inline T atomicExch(T* p, T v) { const T old = *p; *p = v; return old; }
template <class T> inline T atomicMax(T* p, T v) { const T old = *p; *p = old > v ? old : v; return old; }
template <class T> inline T atomicMin(T* p, T v) { const T old = *p; *p = old < v ? old : v; return old; }
template <class T> inline T atomicAnd(T* p, T v) { const T old = *p; *p = old & v; return old; }
template <class T> inline T atomicOr(T* p, T v) { const T old = *p; *p = old | v; return old; }
template <class T> inline T atomicXor(T* p, T v) { const T old = *p; *p = old ^ v; return old; }
template <class T> inline T atomicCAS(T* p, T compare, T v) {
    const T old = *p;
    if (old == compare) *p = v;
    return old;
}
// CUDA's wrap-around increment: ((old >= limit) ? 0 : old + 1).
inline unsigned atomicInc(unsigned* p, unsigned limit) {
    const unsigned old = *p;
    *p = old >= limit ? 0 : old + 1;
    return old;
}
