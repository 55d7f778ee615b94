// The emulator's scheduler: blocks in shuffled order, each block's threads as fibers
// resumed in forward, reverse or shuffled order between barriers; warp collectives with a
// per-warp rendezvous; cp.async groups; guarded memory; the extern "C" controls emulator.py uses.
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "conv_gemm.cuh"

namespace emu {
uint3 thread_idx, block_idx;
dim3 block_dim, grid_dim;
cudaError_t last_error = cudaSuccess;
int sm_count = 2, occupancy = 2, device_count = 2;
int compute_capability = 90;  // what the device queries answer: sm_90 (an H100) unless set
long live_allocations = 0;
int order_mode = 2;  // 0 forward, 1 reverse, 2 shuffled
std::mt19937 order_rng(1);
long launches_run = 0, blocks_run = 0;
KernelTag* kernel_tags = nullptr;

KernelTag::KernelTag(const char* name_, const char* signature_, const char* unit_)
    : name(name_), signature(signature_), unit(unit_), seen(false), next(kernel_tags) {
    kernel_tags = this;
}

// "kernel", or "kernel[A=a, B=b]" with the instantiation's template arguments but the tile
// shape Cfg (which the problem's size picks) and the typedefs, from g++'s __PRETTY_FUNCTION__:
// "void k(...) [with Cfg = ...; convmma::Precision P = convmma::Precision::TF32; Op =
// {anonymous}::DataOp]"
// -> "k[P=convmma::Precision::TF32, Op=DataOp in conv.cu]" (an argument in an anonymous
// namespace is named with the file that defines it).
std::string kernel_key(const KernelTag& tag) {
    const std::string sig = tag.signature, unit = tag.unit;
    const size_t with = sig.rfind("[with ");
    if (with == std::string::npos) return tag.name;
    std::string args;
    size_t at = with + 6;
    while (at < sig.size()) {
        size_t end = sig.find("; ", at);
        if (end == std::string::npos) end = sig.size() - 1;  // the closing ]
        const std::string binding = sig.substr(at, end - at);
        at = end + 2;
        const size_t eq = binding.find(" = ");
        if (eq == std::string::npos) continue;
        const std::string left = binding.substr(0, eq);
        const std::string name = left.substr(left.find_last_of(' ') + 1);
        if (name == "Cfg" || (name.size() > 2 && name.compare(name.size() - 2, 2, "_t") == 0))
            continue;  // the tile shape, and typedefs g++ spells out (size_t = ...)
        std::string value = binding.substr(eq + 3);
        bool local = false;
        for (size_t p; (p = value.find("{anonymous}::")) != std::string::npos; local = true)
            value.erase(p, 13);
        if (local) value += " in " + unit.substr(unit.find_last_of('/') + 1);
        args += (args.empty() ? "" : ", ") + name + "=" + value;
    }
    return args.empty() ? std::string(tag.name) : std::string(tag.name) + "[" + args + "]";
}

namespace {
constexpr size_t kStack = 128 << 10;
enum class State { Ready, Barrier, Warp, Done };
struct Copy {
    char* dst;
    std::vector<char> data;
};
struct Fiber {
    void* sp;         // the saved stack pointer while suspended (x86-64)
    ucontext_t ctx;   // elsewhere
    std::vector<char> stack;
    State state;
    uint3 tid;
    LaneOp* op;  // while state == Warp
    Exchange exchange;
    std::vector<Copy> open;                  // cp.async copies not yet committed
    std::vector<std::vector<Copy>> groups;   // committed, oldest first
};
std::vector<Fiber> fibers;
void* scheduler_sp;
ucontext_t scheduler;
Fiber* current = nullptr;
const std::function<void()>* body = nullptr;
std::string failure;  // set by fail() inside a fiber; the launch throws it

std::string block_text() {
    char text[64];
    snprintf(text, sizeof text, "block (%u,%u,%u)", block_idx.x, block_idx.y, block_idx.z);
    return text;
}

std::string where(const uint3& t) {
    char text[64];
    snprintf(text, sizeof text, " thread (%u,%u,%u)", t.x, t.y, t.z);
    return block_text() + text;
}

void trampoline();

// Switching between the scheduler and a fiber. On x86-64 a few instructions that save the
// callee-saved registers and the stack pointer (swapcontext also saves the signal mask, a system
// call per switch, which made switching most of the emulator's time); ucontext elsewhere.
#if defined(__x86_64__)
extern "C" void emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");

void start_fiber(Fiber& f) {
    // popped by emu_switch: six registers, then trampoline as the return address; the slot above
    // it stands for trampoline's own return address, so rsp is 8 mod 16 at its entry (the ABI's)
    auto top = reinterpret_cast<uintptr_t>(f.stack.data() + f.stack.size()) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top) - 8;
    for (int i = 0; i < 6; ++i) sp[i] = nullptr;
    sp[6] = reinterpret_cast<void*>(&trampoline);
    sp[7] = nullptr;
    f.sp = sp;
}
void resume(Fiber& f) { emu_switch(&scheduler_sp, f.sp); }
void suspend(Fiber& f) { emu_switch(&f.sp, scheduler_sp); }
#else
void start_fiber(Fiber& f) {
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, trampoline, 0);
}
void resume(Fiber& f) { swapcontext(&scheduler, &f.ctx); }
void suspend(Fiber& f) { swapcontext(&f.ctx, &scheduler); }
#endif

void trampoline() {
    try {
        (*body)();
    } catch (std::exception& e) {
        failure = e.what();
    }
    current->state = State::Done;
    suspend(*current);
    abort();  // a finished fiber is never resumed
}

// A fault inside a kernel (a guard page) jumps back to the launch, which throws: the caller gets
// an error naming the address, block and thread instead of a dead process.
sigjmp_buf fault_jump;
void* fault_address = nullptr;
void on_fault(int, siginfo_t* info, void*) {
    fault_address = info->si_addr;
    siglongjmp(fault_jump, 1);
}

struct FaultTrap {
    struct sigaction old_segv, old_bus;
    FaultTrap() {
        static std::vector<char> alt(1 << 16);  // the handler must not run on a fiber's stack
        stack_t ss{};
        ss.ss_sp = alt.data();
        ss.ss_size = alt.size();
        sigaltstack(&ss, nullptr);
        struct sigaction sa{};
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
    }
    ~FaultTrap() {
        sigaction(SIGSEGV, &old_segv, nullptr);
        sigaction(SIGBUS, &old_bus, nullptr);
    }
};

[[noreturn]] void stop(const std::string& what) {
    throw std::runtime_error("emu: " + what);
}

// The warp of thread t is complete when every lane of its mask waits at a collective: check that
// they all wait at the same one, run the exchange and let them go on.
void try_complete(unsigned t, unsigned threads) {
    const unsigned first = t / 32 * 32, lane = t % 32;
    const LaneOp& op = *fibers[t].op;
    if (!(op.mask >> lane & 1u))
        stop(std::string(op.name) + ": the calling lane " + std::to_string(lane) +
             " is not in its mask, in " + where(fibers[t].tid));
    LaneOp* lanes[32] = {};
    for (unsigned l = 0; l < 32; ++l) {
        if (!(op.mask >> l & 1u)) continue;
        const unsigned g = first + l;
        if (g >= threads)
            stop(std::string(op.name) + ": the mask names lane " + std::to_string(l) +
                 " but this warp has " + std::to_string(threads - first) + " threads, in " +
                 where(fibers[t].tid));
        const Fiber& f = fibers[g];
        if (f.state == State::Done)
            stop(std::string(op.name) + ": lane " + std::to_string(l) +
                 " of the mask exited without reaching it, in " + where(fibers[t].tid));
        if (f.state != State::Warp) return;  // not there yet
        if (strcmp(f.op->name, op.name) != 0 || f.op->mask != op.mask) {
            char masks[64];
            snprintf(masks, sizeof masks, " (mask %08x) while lane %u waits at ", f.op->mask, lane);
            stop(std::string("warp collectives disagree: lane ") + std::to_string(l) + " waits at " +
                 f.op->name + masks + op.name + ", in " + where(fibers[t].tid));
        }
        lanes[l] = f.op;
    }
    fibers[t].exchange(lanes, op.mask);
    for (unsigned l = 0; l < 32; ++l)
        if (lanes[l]) fibers[first + l].state = State::Ready;
}

std::string waiting_summary(unsigned threads) {
    std::string text;
    for (unsigned t = 0; t < threads && text.size() < 300; ++t)
        if (fibers[t].state == State::Warp)
            text += " lane " + std::to_string(t % 32) + " of warp " + std::to_string(t / 32) +
                    " at " + fibers[t].op->name + ";";
    return text;
}

void run_block(unsigned threads, std::vector<unsigned>& order) {
    for (unsigned t = 0; t < threads; ++t) {
        Fiber& f = fibers[t];
        f.stack.resize(kStack);
        start_fiber(f);
        f.state = State::Ready;
        f.tid = {t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
        f.open.clear();
        f.groups.clear();
    }
    std::vector<unsigned> ready;
    for (;;) {
        ready.clear();
        if (order_mode == 1) std::reverse(order.begin(), order.end());
        if (order_mode == 2) std::shuffle(order.begin(), order.end(), order_rng);
        for (unsigned t : order)
            if (fibers[t].state == State::Ready) ready.push_back(t);
        if (ready.empty()) {
            unsigned done = 0, at_barrier = 0;
            for (unsigned t = 0; t < threads; ++t) {
                done += fibers[t].state == State::Done;
                at_barrier += fibers[t].state == State::Barrier;
            }
            if (done == threads) return;
            if (done + at_barrier != threads)
                stop("warp collectives wait for lanes that are at __syncthreads or exited:" +
                     waiting_summary(threads) + " in " + block_text());
            if (done != 0)
                stop("__syncthreads reached by " + std::to_string(at_barrier) + " threads while " +
                     std::to_string(done) + " exited, in " + where(fibers[order[0]].tid));
            for (unsigned t = 0; t < threads; ++t) fibers[t].state = State::Ready;
            continue;
        }
        for (unsigned t : ready) {
            if (fibers[t].state != State::Ready) continue;  // (released, then caught, this round)
            current = &fibers[t];
            thread_idx = current->tid;
            resume(*current);
            current = nullptr;
            if (!failure.empty()) {
                const std::string what = failure;
                failure.clear();
                stop(what + ", in " + where(fibers[t].tid));
            }
            if (fibers[t].state == State::Warp) try_complete(t, threads);
        }
    }
}
}  // namespace

void sync() {
    if (!current) stop("__syncthreads outside a kernel");
    current->state = State::Barrier;
    suspend(*current);
}

void fail(const char* what) {
    if (!current) stop(what);
    failure = what;
    current->state = State::Done;
    suspend(*current);
    abort();  // never resumed
}

[[noreturn]] void unsupported(const char* what) {
    fail((std::string(what) + " is not emulated").c_str());
}

void warp_collective(LaneOp& op, Exchange exchange) {
    if (!current) stop(std::string(op.name) + " outside a kernel");
    current->op = &op;
    current->exchange = exchange;
    current->state = State::Warp;
    suspend(*current);
}

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
    if (!current) stop("cp.async outside a kernel");
    if (src_bytes < 0 || src_bytes > bytes) fail("cp.async: src-size outside 0..cp-size");
    if (((uintptr_t)dst | (uintptr_t)src) % bytes) fail("cp.async: address not aligned to its size");
    Copy c{static_cast<char*>(dst), std::vector<char>(bytes, 0)};
    memcpy(c.data.data(), src, src_bytes);  // read now: a bad source faults at the issuing line
    memset(c.dst, 0xff, bytes);  // NaN (float, bf16) until a wait completes the copy
    current->open.push_back(std::move(c));
}

void cp_async_commit() {
    if (!current) stop("cp.async.commit_group outside a kernel");
    current->groups.push_back(std::move(current->open));
    current->open.clear();
}

void cp_async_wait(int pending_groups) {
    if (!current) stop("cp.async.wait_group outside a kernel");
    auto& groups = current->groups;
    while ((int)groups.size() > pending_groups) {
        for (const Copy& c : groups.front()) memcpy(c.dst, c.data.data(), c.data.size());
        groups.erase(groups.begin());
    }
}

namespace {
std::unordered_map<const void*, size_t> dynamic_allowed;  // cudaFuncSetAttribute's limits
std::vector<float4> dynamic_storage;  // the running launch's dynamic shared memory
size_t dynamic_size = 0;
}  // namespace

void allow_dynamic_shared(const void* kernel, int bytes) { dynamic_allowed[kernel] = bytes; }

unsigned char* dynamic_shared() {
    if (!current) stop("extern __shared__ outside a kernel");
    if (dynamic_size == 0)
        fail("extern __shared__ in a kernel launched without dynamic shared memory");
    return reinterpret_cast<unsigned char*>(dynamic_storage.data());
}

void Launch::operator()(const std::function<void()>& kernel_body) const {
    const unsigned threads = block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (dynamic_bytes > kStaticSharedLimit) {
        const auto allowed = dynamic_allowed.find(kernel);
        if (allowed == dynamic_allowed.end() || allowed->second < dynamic_bytes) {
            last_error = cudaErrorInvalidValue;  // as the GPU: more than 48 KB needs the opt-in
            return;
        }
    }
    dynamic_size = dynamic_bytes;
    dynamic_storage.resize((dynamic_bytes + sizeof(float4) - 1) / sizeof(float4));
    if (current) stop("a kernel launched from inside a kernel");
    ++launches_run;
    body = &kernel_body;
    block_dim = block;
    grid_dim = grid;
    fibers.resize(threads);
    std::vector<unsigned> order(threads);
    for (unsigned t = 0; t < threads; ++t) order[t] = t;
    std::vector<uint3> blocks;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) blocks.push_back({x, y, z});
    if (order_mode == 1) std::reverse(blocks.begin(), blocks.end());
    if (order_mode == 2) std::shuffle(blocks.begin(), blocks.end(), order_rng);
    FaultTrap trap;
    if (sigsetjmp(fault_jump, 1)) {
        char address[32];
        snprintf(address, sizeof address, "%p", fault_address);
        const uint3 tid = current ? current->tid : thread_idx;
        current = nullptr;
        stop(std::string("memory fault at ") + address + " in " + where(tid));
    }
    try {
        for (const uint3& b : blocks) {
            ++blocks_run;
            block_idx = b;
            memset(dynamic_storage.data(), 0xff, dynamic_size);  // NaN: nothing carried over
            run_block(threads, order);
        }
    } catch (...) {
        current = nullptr;
        failure.clear();
        throw;
    }
}

// Allocations end exactly at a protected page (mode 0) or start just after one (mode 1), filled
// with NaN.
static std::unordered_map<void*, std::pair<char*, size_t>> guarded;
void* guarded_alloc(size_t bytes, int mode) {
    const size_t page = sysconf(_SC_PAGESIZE);
    const size_t body = (bytes + page - 1) / page * page;
    char* base = (char*)mmap(nullptr, body + 2 * page, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return nullptr;
    mprotect(base, page, PROT_NONE);
    mprotect(base + page + body, page, PROT_NONE);
    char* p = mode == 0 ? base + page + body - bytes : base + page;
    const float nan = NAN;
    for (size_t i = 0; i + 4 <= bytes; i += 4) memcpy(p + i, &nan, 4);
    guarded[p] = {base, body + 2 * page};
    return p;
}
void guarded_free(void* p) {
    auto it = guarded.find(p);
    if (it == guarded.end()) stop("cudaFree of a pointer cudaMalloc did not return");
    munmap(it->second.first, it->second.second);
    guarded.erase(it);
}
}  // namespace emu

const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        default: return "cudaErrorLaunchFailure";
    }
}
const char* cudaGetErrorString(cudaError_t e) {
    return e == cudaSuccess ? "no error" : "an error in the emulated CUDA runtime";
}

// The controls stay visible when the module is built with -fvisibility=hidden (pybind11's).
#pragma GCC visibility push(default)
extern "C" {
// order: 0 forward, 1 reverse, 2 shuffled (seeded; blocks and threads); sms: what the
// SM-count query answers.
void emu_config(int order, int seed, int sms) {
    emu::order_mode = order;
    emu::order_rng.seed(seed);
    emu::sm_count = sms;
}
// Blocks per SM the occupancy query answers (< 1: it fails). Set it before the first launch:
// the kernels cache the first answer.
void emu_set_occupancy(int n) { emu::occupancy = n; }
void emu_set_device_count(int n) { emu::device_count = n; }
// The compute capability the device queries answer, as 10 * major + minor (75: sm_75).
void emu_set_compute_capability(int cc) { emu::compute_capability = cc; }
long emu_live_allocations() { return emu::live_allocations; }
long emu_launches_run() { return emu::launches_run; }
long emu_blocks_run() { return emu::blocks_run; }
// The kernels entered since the last call, one key a line (emu::kernel_key), sorted; clears
// the record.
const char* emu_kernels_seen() {
    static std::string text;
    std::vector<std::string> keys;
    for (emu::KernelTag* tag = emu::kernel_tags; tag; tag = tag->next) {
        if (tag->seen) keys.push_back(emu::kernel_key(*tag));
        tag->seen = false;
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    text.clear();
    for (const std::string& key : keys) text += key + "\n";
    return text.c_str();
}
void* emu_alloc(size_t bytes, int mode) { return emu::guarded_alloc(bytes, mode); }
void emu_free(void* p) { emu::guarded_free(p); }

// The first n in [n0, n0 + count) that FastDiv(d) divides wrongly, or -1.
long emu_fastdiv_check(int d, int n0, int count) {
    const convgemm::FastDiv f(d);
    for (long n = n0; n < (long)n0 + count; ++n) {
        int q;
        const int r = f.divmod((int)n, q);
        if (q != n / d || r != n % d) return n;
    }
    return -1;
}
}
#pragma GCC visibility pop
