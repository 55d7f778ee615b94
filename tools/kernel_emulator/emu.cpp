// The emulator's scheduler, guarded memory and the extern "C" entry points that emulator.py calls.
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "conv.h"
#include "conv_gemm.cuh"

namespace emu {
uint3 thread_idx, block_idx;
dim3 block_dim, grid_dim;
cudaError_t last_error = cudaSuccess;
int sm_count = 2, occupancy = 2;
long live_allocations = 0;
int order_mode = 0;  // 0 forward, 1 reverse, 2 shuffled
std::mt19937 order_rng(1);
long launches_run = 0, blocks_run = 0;

[[noreturn]] void unsupported(const char* what) {
    fprintf(stderr, "emu: %s is not emulated\n", what);
    abort();
}

namespace {
constexpr size_t kStack = 128 << 10;
struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    bool done;
    uint3 tid;
};
std::vector<Fiber> fibers;
ucontext_t scheduler;
Fiber* current = nullptr;
const std::function<void()>* body = nullptr;

void trampoline() {
    (*body)();
    current->done = true;
    swapcontext(&current->ctx, &scheduler);
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

std::string where() {
    char text[160];
    snprintf(text, sizeof text, "block (%u,%u,%u) thread (%u,%u,%u)", block_idx.x, block_idx.y,
             block_idx.z, thread_idx.x, thread_idx.y, thread_idx.z);
    return text;
}
}  // namespace

void sync() { swapcontext(&current->ctx, &scheduler); }

void Launch::operator()(const std::function<void()>& kernel) const {
    const unsigned threads = block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535) {
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    ++launches_run;
    body = &kernel;
    block_dim = block;
    grid_dim = grid;
    fibers.resize(threads);
    std::vector<unsigned> order(threads);
    FaultTrap trap;
    if (sigsetjmp(fault_jump, 1)) {
        char address[32];
        snprintf(address, sizeof address, "%p", fault_address);
        throw std::runtime_error(std::string("emu: memory fault at ") + address + " in " + where());
    }
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                ++blocks_run;
                for (unsigned t = 0; t < threads; ++t) {
                    Fiber& f = fibers[t];
                    f.stack.resize(kStack);
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data();
                    f.ctx.uc_stack.ss_size = kStack;
                    f.ctx.uc_link = nullptr;
                    makecontext(&f.ctx, trampoline, 0);
                    f.done = false;
                    f.tid = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                    order[t] = t;
                }
                // One round resumes every live thread until it exits or reaches a barrier.
                for (;;) {
                    if (order_mode == 1) std::reverse(order.begin(), order.end());
                    if (order_mode == 2) std::shuffle(order.begin(), order.end(), order_rng);
                    unsigned done = 0;
                    for (unsigned t : order) {
                        Fiber& f = fibers[t];
                        if (!f.done) {
                            current = &f;
                            thread_idx = f.tid;
                            block_idx = {x, y, z};
                            swapcontext(&scheduler, &f.ctx);
                        }
                        done += f.done;
                    }
                    if (done == threads) break;
                    if (done != 0)
                        throw std::runtime_error("emu: __syncthreads reached by " +
                                                 std::to_string(threads - done) + " threads while " +
                                                 std::to_string(done) + " exited, in " + where());
                }
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
    if (it == guarded.end()) unsupported("freeing an unknown pointer");
    munmap(it->second.first, it->second.second);
    guarded.erase(it);
}
}  // namespace emu

static std::string g_error;

extern "C" {
const char* emu_error() { return g_error.c_str(); }
// order: 0 forward, 1 reverse, 2 shuffled (seeded); sms: what the SM-count query answers.
void emu_config(int order, int seed, int sms) {
    emu::order_mode = order;
    emu::order_rng.seed(seed);
    emu::sm_count = sms;
}
// Blocks per SM the occupancy query answers (< 1: it fails). Set it before the first launch:
// the kernels cache the first answer.
void emu_set_occupancy(int n) { emu::occupancy = n; }
long emu_live_allocations() { return emu::live_allocations; }
long emu_launches_run() { return emu::launches_run; }
long emu_blocks_run() { return emu::blocks_run; }
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

// 0: done; 1: std::invalid_argument (a bad shape or setting); 2: another error (emu_error()).
#define OP(name)                                                                              \
    int emu_##name(const float* a, const float* b, float* out, int N, int C, int H, int W,     \
                   int F, int fs, int OH, int OW, int stride, int padding, int groups) {      \
        try {                                                                                 \
            name(a, b, out, ConvShape{N, C, H, W, F, fs, OH, OW, stride, padding, groups},    \
                 nullptr);                                                                    \
            return 0;                                                                         \
        } catch (std::invalid_argument& e) {                                                  \
            g_error = e.what();                                                               \
            return 1;                                                                         \
        } catch (std::exception& e) {                                                         \
            g_error = e.what();                                                               \
            return 2;                                                                         \
        }                                                                                     \
    }
OP(conv_forward)
OP(conv_backward_data)
OP(conv_backward_filter)
OP(local_forward)
OP(local_backward_data)
OP(local_backward_filter)
}
