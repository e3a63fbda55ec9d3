// runtime.cpp: the simulator's scheduler. It is its own translation unit, linked into every module next to
// the generated module.cpp (kernel file plus kernel table, see compiler.py), so that no macro of a kernel
// file can change it; cuda_sim.h is force-included here too. Each module's library has its own copy.
//
// A launch runs its blocks on a small pool of OS threads (one block at a time on each), taking them in a
// shuffled order. Inside a block every CUDA thread is a fiber: a function running on its own small stack
// that can be suspended in the middle and resumed later. A thread runs until it returns or reaches
// __syncthreads(); then the next one in the round runs. When every thread of the block waits at the
// barrier, all are released for the next round, again in a shuffled order. So a barrier really separates
// "before" from "after", and a missing one shows up as a wrong result instead of passing by luck. The
// threads of a block stay on one OS thread, and their order depends only on the launch seed and the block's
// index, never on which OS thread runs it. New threads start as plain function calls on a "runner" (see
// runner_main), so a kernel without barriers costs no context switch per thread; a thread waiting at a
// barrier hands over to the next one with one switch (a handful of register saves, see sim_switch below).
#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// libstdc++'s threading headers spell __attribute__((__noinline__)), which cuda_sim.h's CUDA qualifier of
// that name would break.
#pragma push_macro("__noinline__")
#undef __noinline__
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#pragma pop_macro("__noinline__")
#include <cstdlib>
#include <cstring>
#include <string>
#include <algorithm>
#include <utility>
#include <memory>
#include <vector>

#ifndef MAP_NORESERVE  // macOS: memory is committed lazily anyway
#define MAP_NORESERVE 0
#endif

#define SIM_EXPORT extern "C" __attribute__((visibility("default")))

// ---- the context switch ----------------------------------------------------------------------------------
// sim_switch(&save_sp, next_sp) pushes the callee-saved registers on the current stack, stores the stack
// pointer in save_sp, loads next_sp and pops the registers saved there: execution continues wherever the
// other fiber called sim_switch (or, for a new runner, at runner_main). This is the whole of what ucontext's
// swapcontext does, minus its signal-mask system call.
extern "C" void sim_switch(void** save_sp, void* next_sp);

#if defined(__APPLE__)
#define SIM_SYMBOL(name) "_" #name
#define SIM_HIDE(name) ".private_extern _" #name "\n"
#else
#define SIM_SYMBOL(name) #name
#define SIM_HIDE(name) ".hidden " #name "\n"
#endif

#if defined(__x86_64__)
// System V AMD64: callee-saved rbx, rbp, r12-r15 (the return address is already on the stack).
asm(".text\n"
    ".globl " SIM_SYMBOL(sim_switch) "\n" SIM_HIDE(sim_switch) ".p2align 4\n" SIM_SYMBOL(sim_switch) ":\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n");
static const int kSavedWords = 6;
#elif defined(__aarch64__)
// AAPCS64: callee-saved x19-x28, frame pointer x29, link register x30 and the low halves of v8-v15.
asm(".text\n"
    ".globl " SIM_SYMBOL(sim_switch) "\n" SIM_HIDE(sim_switch) ".p2align 2\n" SIM_SYMBOL(sim_switch) ":\n"
    "  sub sp, sp, #160\n"
    "  stp x19, x20, [sp, #0]\n  stp x21, x22, [sp, #16]\n  stp x23, x24, [sp, #32]\n"
    "  stp x25, x26, [sp, #48]\n  stp x27, x28, [sp, #64]\n  stp x29, x30, [sp, #80]\n"
    "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n  stp d12, d13, [sp, #128]\n"
    "  stp d14, d15, [sp, #144]\n"
    "  mov x9, sp\n  str x9, [x0]\n  mov sp, x1\n"
    "  ldp x19, x20, [sp, #0]\n  ldp x21, x22, [sp, #16]\n  ldp x23, x24, [sp, #32]\n"
    "  ldp x25, x26, [sp, #48]\n  ldp x27, x28, [sp, #64]\n  ldp x29, x30, [sp, #80]\n"
    "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n  ldp d12, d13, [sp, #128]\n"
    "  ldp d14, d15, [sp, #144]\n"
    "  add sp, sp, #160\n"
    "  ret\n");
#else
#error "the CUDA simulator supports x86-64 and arm64 (AArch64) processors"
#endif

namespace sim_rt {

// ---- what the generated part of the module provides ------------------------------------------------------
int kernel_count();
const KernelEntry& kernel_entry(int index);
int dynamic_shared_count();
unsigned char* dynamic_shared_address(int index);  // of this OS thread's copy (it is thread_local)
const char* dynamic_shared_name(int index);

// ---- the scheduler ---------------------------------------------------------------------------------------
// Everything below that a running block touches is per OS thread: each OS thread of the pool runs one block
// at a time with its own Scheduler (fibers, stacks, error, and the ThreadState that threadIdx reads).

// What went wrong, field by field, for launcher.py to turn into one exception class per kind (checks.py).
enum ReportKind { kOther = 0, kMemcheck = 1, kRacecheck = 2, kInitcheck = 3, kSynccheck = 4, kTrap = 5, kCrash = 6,
                  kInterrupted = 7 };
struct Report {
    int kind;
    unsigned int block[3];
    int thread[3];        // -1: no thread (a check after the launch)
    int other_thread[3];  // racecheck: the thread of the earlier access; -1: none
    int buffer;           // index of the host buffer, -1: none, -2: dynamic shared, -3: static shared
    long long offset;     // byte offset of the access from the start of `buffer`
    int size;             // bytes accessed
    int is_write, other_is_write;
    unsigned long long pc, other_pc;  // code addresses (offsets in the library) of the accesses; 0: unknown
    int line, other_line;             // source lines known without debug information (barriers); 0: unknown
    const char* file;                 // ... and their files (string literals of the module); nullptr: unknown
    const char* other_file;
};

// What a launch warns about without failing (launcher.py turns each into a Python warning of its kind).
enum WarningKind { kBenignRace = 1, kBarrierSites = 2 };
struct LaunchWarning {
    int kind;
    std::string key;   // one warning per key (the source lines involved) and launch
    std::string text;
};
std::mutex warnings_lock;  // blocks on several OS threads may warn at once
std::vector<LaunchWarning> launch_warnings;
const size_t kMaxWarnings = 20;

void warn(int kind, const std::string& key, const std::string& text) {
    std::lock_guard<std::mutex> hold(warnings_lock);
    if (launch_warnings.size() >= kMaxWarnings) return;
    for (const LaunchWarning& w : launch_warnings)
        if (w.kind == kind && w.key == key) return;
    launch_warnings.push_back({kind, key, text});
}

namespace {

enum State { kNew, kReady, kAtBarrier, kAtWarpBarrier, kAtGridBarrier, kDone };

struct Fiber {
    void* sp = nullptr;  // saved stack pointer while suspended
    int state = kNew;
    int stack = -1;  // index into Scheduler::stacks while the thread is alive
    unsigned int warp_mask = 0;  // the lanes named by the __syncwarp() or shuffle it waits in
    bool converging = false;     // waits at an __activemask() (at `site`) to learn which lanes arrive with it
    Site site{nullptr, 0};       // the __syncthreads(), __syncwarp(), warp function or __activemask() it waits at
};

// One stack per CUDA thread alive at a barrier, each in its own region of kFiberRegionBytes (1 MiB) aligned
// to its size: an unmapped guard page at the low end (an overflow faults instead of silently overwriting the
// neighbouring stack), the stack, and near the top end a header of two pointers, to the Scheduler and to its
// ThreadState, that code running on the stack finds from the stack pointer (cuda_sim.h, fiber_header). The
// header's offset, and so the stack's top, moves down by a multiple of 1088 bytes (up to 68 KiB) that depends
// on the region: stacks that all began at the same offset of a page would compete for the same few cache
// sets, and switching between a block's threads would then miss the cache on every switch. Mapped with
// MAP_NORESERVE, so only the pages a thread touches cost memory; every thread gets more than 900 KiB (a GPU
// thread's stack is 1 KiB by default, growing on demand up to 512 KiB with cudaLimitStackSize).
const int kMaxThreads = 1024;

struct Scheduler {
    ThreadState current;
    void (*thread_body)(void**) = nullptr;
    void** args = nullptr;
    std::vector<Fiber> fibers;
    std::vector<uint3> thread_indices;  // threadIdx of each linear thread index, computed once per launch
    std::vector<unsigned char*> stacks;  // allocated on demand, reused by every later block and launch
    std::vector<int> free_stacks;
    std::vector<unsigned long long> warp_slots = std::vector<unsigned long long>(kMaxThreads);
    void* scheduler_sp = nullptr;
    std::vector<int> queue;  // the threads to run in this round, in their shuffled order
    size_t next = 0;         // queue[next] runs next
    int runner_stack = -1;   // the stack a starting runner runs on (runner_main reads it)
    bool failed = false;     // a round ended early: error says why
    int running = -1;
    unsigned long long rng = 0;
    std::string error;
    Report report;
    int checks = 0;                         // kCheck* bits of this launch (the checked build only)
    bool strict = false;                    // checks="strict": two barrier sites are an error, not a warning
    unsigned long long epoch = 0;           // +1 at every block start and __syncthreads() release
    unsigned long long barriers = 0;        // __syncthreads() releases in this launch (the access record)
    std::vector<unsigned long long> warp_epoch = std::vector<unsigned long long>(kMaxThreads / 32);
    sigjmp_buf crash_jump;
};
// This OS thread's scheduler. A plain pointer, initialised to a constant, so that reaching it costs one
// thread-local lookup, without the initialisation check a thread_local Scheduler would add to every use
// (which doubled the cost of a context switch). use_this_threads_scheduler() sets it.
thread_local Scheduler* S = nullptr;

void use_this_threads_scheduler() {
    // On the heap rather than in thread-local storage, which a checked build takes for shared memory.
    static thread_local std::unique_ptr<Scheduler> own(new Scheduler);
    S = own.get();
}

// The scheduler of the fiber that calls it, read from its stack's header: no thread-local lookup.
SIM_UNCHECKED inline Scheduler* fiber_scheduler() { return static_cast<Scheduler*>(fiber_header(stack_pointer())[0]); }

// The hot functions below take the scheduler as a parameter (shadowing the thread-local S): a thread-local
// lookup per element of a loop would cost more than the loop's work.
unsigned long long next_random(Scheduler* S) {  // splitmix64
    unsigned long long z = (S->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

template <class T>
void shuffle(Scheduler* S, std::vector<T>& items) {  // Fisher-Yates, with Lemire's multiply-shift instead of a division
    for (size_t i = items.size(); i > 1; --i) {
        size_t j = (size_t)(((unsigned __int128)next_random(S) * i) >> 64);
        std::swap(items[i - 1], items[j]);
    }
}

// A new stack region for scheduler S (its base address), or nullptr when memory is exhausted.
unsigned char* allocate_stack(Scheduler* S) {
    const size_t region = kFiberRegionBytes, page = (size_t)sysconf(_SC_PAGESIZE);
    // Map twice the size and keep the aligned middle: mmap itself only aligns to pages.
    void* mapped = mmap(nullptr, 2 * region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANON | MAP_NORESERVE, -1, 0);
    if (mapped == MAP_FAILED) return nullptr;
    uintptr_t start = reinterpret_cast<uintptr_t>(mapped), base = (start + region - 1) & ~(region - 1);
    if (base > start) munmap(mapped, base - start);
    if (base + region < start + 2 * region) munmap(reinterpret_cast<void*>(base + region), start + region - base);
    mprotect(reinterpret_cast<void*>(base), page, PROT_NONE);
    void** header = const_cast<void**>(fiber_header(base));
    header[0] = S, header[1] = &S->current;
    return reinterpret_cast<unsigned char*>(base);
}

[[noreturn]] void runner_main();
void resolve_pending_races();  // with the checks, below

// The initial stack of a new runner, laid out as sim_switch leaves a suspended fiber: zeroed callee-saved
// registers, then runner_main as the address to "return" to.
void* initial_stack_pointer(Scheduler* S, int stack) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(fiber_header(reinterpret_cast<uintptr_t>(S->stacks[stack]))) - 16) & ~uintptr_t(15);
#if defined(__x86_64__)
    // After 6 pops and ret, rsp = top - 8: the alignment a function sees right after a call.
    void** sp = reinterpret_cast<void**>(top - 8 * (kSavedWords + 2));
    for (int i = 0; i < kSavedWords; ++i) sp[i] = nullptr;
    sp[kSavedWords] = reinterpret_cast<void*>(&runner_main);
    sp[kSavedWords + 1] = nullptr;  // runner_main's (never used) return address
    return sp;
#else
    void** sp = reinterpret_cast<void**>(top - 160);
    for (int i = 0; i < 20; ++i) sp[i] = nullptr;
    sp[11] = reinterpret_cast<void*>(&runner_main);  // x30, the link register
    return sp;
#endif
}

// A free stack (allocated when none is), or -1 with S->error set when memory is exhausted.
int take_stack(Scheduler* S) {
    if (S->free_stacks.empty()) {
        unsigned char* stack = allocate_stack(S);
        if (stack == nullptr) {
            S->error = "cannot allocate a stack for a simulated thread (out of memory)";
            return -1;
        }
        S->free_stacks.push_back((int)S->stacks.size());
        S->stacks.push_back(stack);
    }
    int stack = S->free_stacks.back();
    S->free_stacks.pop_back();
    return stack;
}

// Thread t (linear index x + y*bx + z*bx*by) is the one running from now on.
void enter(Scheduler* S, int t) {
    S->running = t;
    S->current.thread_idx = S->thread_indices[t];
}

// Leaves the running context, saving it in *save_sp, for whatever runs next in this round: a suspended
// thread continues where it stopped, a new thread starts on a runner, and after the round's last thread
// the scheduler decides about the barriers. One switch per step: fibers hand over to each other directly.
// S is passed in: the scheduler's own loop calls this too, from the OS thread's stack.
void yield_to_next(Scheduler* S, void** save_sp) {
    void* next_sp = S->scheduler_sp;
    if (S->next < S->queue.size()) {
        int t = S->queue[S->next];
        if (S->fibers[t].state == kNew) {
            int stack = take_stack(S);
            if (stack < 0) S->failed = true;  // back to the scheduler, which reports S->error
            else S->runner_stack = stack, next_sp = initial_stack_pointer(S, stack);
        } else {
            ++S->next;
            enter(S, t);
            next_sp = S->fibers[t].sp;
            // The thread after this one: its saved registers and the kernel's frame above them are in a
            // stack the cache has probably dropped by now. Fetching them while this one runs hides that.
            if (S->next < S->queue.size()) {
                const char* upcoming = static_cast<const char*>(S->fibers[S->queue[S->next]].sp);
                for (int line = 0; line < 4; ++line) __builtin_prefetch(upcoming + 64 * line);
            }
        }
    }
    if (save_sp == &S->scheduler_sp && next_sp == S->scheduler_sp) return;  // the scheduler stays
    sim_switch(save_sp, next_sp);
}

// A runner runs new threads one after the other on its stack, as plain function calls: a thread that
// never waits at a barrier costs no context switch at all. When its thread waits at a barrier, the runner
// stays suspended inside it (the thread owns the stack now) and yield_to_next starts another runner for
// the next new thread. Whenever the thread of a runner returns, the runner goes on with the round; once the
// next thread to run is not a new one, the runner frees its stack and leaves for good.
[[noreturn]] void runner_main() {
    Scheduler* const S = fiber_scheduler();
    const int stack = S->runner_stack;
    for (;;) {
        while (S->next < S->queue.size() && S->fibers[S->queue[S->next]].state == kNew) {
            int t = S->queue[S->next++];
            S->fibers[t].stack = stack;
            S->fibers[t].state = kReady;
            enter(S, t);
            S->thread_body(S->args);
            if (S->checks) resolve_pending_races();
            S->fibers[t].state = kDone;
        }
        S->free_stacks.push_back(stack);  // safe: nothing takes a stack before this runner has switched away
        void* abandoned;
        yield_to_next(S, &abandoned);
        __builtin_unreachable();  // a runner that has left is never resumed
    }
}

std::string describe_threads(const std::vector<int>& threads) {
    const dim3& b = S->current.block_dim;
    std::string out;
    for (size_t i = 0; i < threads.size() && i < 4; ++i) {
        int t = threads[i];
        out += (i ? ", (" : "(") + std::to_string(t % b.x) + "," + std::to_string((t / b.x) % b.y) + "," +
               std::to_string(t / (b.x * b.y)) + ")";
    }
    if (threads.size() > 4) out += " and " + std::to_string(threads.size() - 4) + " more";
    return out;
}

std::string describe_block() {
    const uint3& i = S->current.block_idx;
    return "block (" + std::to_string(i.x) + "," + std::to_string(i.y) + "," + std::to_string(i.z) + ")";
}

std::string describe_thread(int t) { return describe_threads(std::vector<int>{t}); }

void store_thread(int t, int* out) {
    const dim3& b = S->current.block_dim;
    out[0] = t < 0 ? -1 : (int)(t % b.x);
    out[1] = t < 0 ? -1 : (int)((t / b.x) % b.y);
    out[2] = t < 0 ? -1 : (int)(t / (b.x * b.y));
}

// Records an error: its message, its kind, the block, and the thread(s) involved (-1: none).
void fail(int kind, const std::string& message, int thread, int other_thread = -1) {
    S->error = message;
    S->report.kind = kind;
    S->report.buffer = -1;
    S->report.block[0] = S->current.block_idx.x, S->report.block[1] = S->current.block_idx.y;
    S->report.block[2] = S->current.block_idx.z;
    store_thread(thread, S->report.thread);
    store_thread(other_thread, S->report.other_thread);
}

// A new barrier interval: one counter for the whole process, so that two blocks never share an interval
// (racecheck compares accesses of one interval; a cooperative launch interleaves its blocks).
std::atomic<unsigned long long> epoch_counter{0};
unsigned long long next_epoch() { return epoch_counter.fetch_add(1, std::memory_order_relaxed) + 1; }

bool same_site(const Site& a, const Site& b) {
    return a.line == b.line && (a.file == b.file || (a.file && b.file && strcmp(a.file, b.file) == 0));
}

std::string describe_site(const Site& site) {
    return site.file ? std::string(site.file) + ":" + std::to_string(site.line) : "an unknown line";
}

// The source lines of a synccheck report (launcher.py shows them as file:line).
void report_sites(const Site& site, const Site& other) {
    S->report.file = site.file, S->report.line = site.line;
    S->report.other_file = other.file, S->report.other_line = other.line;
}

std::string hex(unsigned int mask) {
    char text[16];
    snprintf(text, sizeof text, "0x%08x", mask);
    return text;
}

// Releases the warp barriers (__syncwarp(mask) and the shuffles and votes built on it) that can complete:
// every lane named in a waiting thread's mask waits too, with the same mask. A named lane that returned or
// waits at __syncthreads(), or a different mask, can never complete: CUDA leaves that undefined (a hang or
// garbage), the simulator reports it. A named lane waiting at an __activemask() may still come: then the
// lanes of a warp where nothing else moved that wait at one __activemask() call site are released together,
// each learning that group as its active mask.
bool release_warp_barriers(Scheduler* S, int n, std::vector<int>& runnable) {
    auto converging = [](const Fiber& f) { return f.state == kAtWarpBarrier && f.converging; };
    unsigned int moved_warps = 0;  // bit w: a barrier of warp w was released in this pass (kMaxThreads / 32 warps)
    for (int t = 0; t < n; ++t) {
        Fiber& f = S->fibers[t];
        if (f.state != kAtWarpBarrier || converging(f)) continue;
        int base = t - t % 32;
        unsigned int lane = (unsigned int)(t % 32), mask = f.warp_mask;
        if (!(mask >> lane & 1u)) {
            fail(kSynccheck,
                 "invalid warp mask in " + describe_block() + ": thread " + describe_thread(t) + " (lane " +
                     std::to_string(lane) + ") calls __syncwarp() or a *_sync warp function with mask " + hex(mask) +
                     " at " + describe_site(f.site) + ", which does not include its own lane",
                 t);
            report_sites(f.site, Site{nullptr, 0});
            return false;
        }
        bool complete = true;
        for (unsigned int other = 0; other < 32 && complete; ++other) {
            if (!(mask >> other & 1u) || base + (int)other >= n) continue;
            const Fiber& g = S->fibers[base + other];
            if (g.state == kAtWarpBarrier && g.warp_mask == mask && !converging(g)) continue;
            complete = false;
            // Released in this pass, or waiting for its __activemask() to be answered: it may still come.
            if (g.state == kReady || converging(g)) continue;
            std::string where = g.state == kDone        ? "has returned"
                                : g.state == kAtBarrier ? "waits at the __syncthreads() of " + describe_site(g.site)
                                                        : "waits with mask " + hex(g.warp_mask) + " at " +
                                                              describe_site(g.site);
            fail(kSynccheck,
                 "warp divergence in " + describe_block() + ": thread " + describe_thread(t) +
                     " waits at __syncwarp() or a warp shuffle/vote with mask " + hex(mask) + " at " +
                     describe_site(f.site) + " while lane " + std::to_string(other) + " (thread " +
                     describe_thread(base + (int)other) + ") " + where +
                     " (every lane named in the mask must reach the same warp barrier)",
                 t, base + (int)other);
            report_sites(f.site, g.state == kDone ? Site{nullptr, 0} : g.site);
            return false;
        }
        if (!complete) continue;
        ++S->warp_epoch[t / 32];
        moved_warps |= 1u << (t / 32);
        for (unsigned int other = 0; other < 32; ++other) {
            if (!(mask >> other & 1u) || base + (int)other >= n) continue;
            S->fibers[base + other].state = kReady;
            runnable.push_back(base + (int)other);
        }
    }
    for (int t = 0; t < n; ++t) {
        const Fiber& f = S->fibers[t];
        if (!converging(f) || (moved_warps >> (t / 32) & 1u)) continue;
        int base = t - t % 32;
        unsigned int group = 0;
        for (int other = base; other < base + 32 && other < n; ++other) {
            const Fiber& g = S->fibers[other];
            if (converging(g) && same_site(g.site, f.site))
                group |= 1u << (other - base);
        }
        for (int other = base; other < base + 32; ++other) {
            if (!(group >> (other - base) & 1u)) continue;
            Fiber& g = S->fibers[other];
            g.warp_mask = group, g.converging = false, g.state = kReady;
            runnable.push_back(other);
        }
    }
    return true;
}

// Decides who runs next once every runnable thread has stopped: warps whose lanes all wait at a warp
// barrier, else the whole block when every thread waits at the same __syncthreads(). Anything else is a
// barrier that can never complete, which a GPU would leave undefined (a hang or garbage): report it.
bool release_barriers(Scheduler* S, int n, std::vector<int>& runnable) {
    // The common cases first, without building lists: all threads returned, or all wait at one barrier.
    int done_count = 0, same_barrier = 0;
    for (int t = 0; t < n; ++t) {
        const Fiber& f = S->fibers[t];
        done_count += f.state == kDone;
        same_barrier += f.state == kAtBarrier && same_site(f.site, S->fibers[0].site);
    }
    if (done_count == n) return true;
    if (same_barrier == n) {
        S->epoch = next_epoch(), ++S->barriers;
        for (int t = 0; t < n; ++t) {
            S->fibers[t].state = kReady;
            runnable.push_back(t);
        }
        return true;
    }
    std::vector<int> done, at_barrier, at_grid;
    bool any_at_warp = false;
    for (int t = 0; t < n; ++t) {
        int state = S->fibers[t].state;
        if (state == kDone) done.push_back(t);
        if (state == kAtBarrier) at_barrier.push_back(t);
        if (state == kAtGridBarrier) at_grid.push_back(t);
        if (state == kAtWarpBarrier) any_at_warp = true;
    }
    if ((int)done.size() == n) return true;
    if (any_at_warp) return release_warp_barriers(S, n, runnable);
    if (!at_grid.empty()) {
        if ((int)at_grid.size() == n) return true;  // parked: the launch releases the grid (run_cooperative)
        int other = !done.empty() ? done[0] : at_barrier[0];
        const Fiber& f = S->fibers[at_grid[0]];
        fail(kSynccheck,
             "grid barrier divergence in " + describe_block() + ": threads " + describe_threads(at_grid) +
                 " wait at the grid.sync() of " + describe_site(f.site) + " but thread " + describe_thread(other) +
                 (done.empty() ? " waits at the __syncthreads() of " + describe_site(S->fibers[other].site)
                               : std::string(" has returned")) +
                 " (every thread of the grid must reach each grid.sync())",
             at_grid[0], other);
        report_sites(f.site, done.empty() ? S->fibers[other].site : Site{nullptr, 0});
        return false;
    }
    if (!done.empty()) {
        const Site& site = S->fibers[at_barrier[0]].site;
        fail(kSynccheck,
             "barrier divergence in " + describe_block() + ": threads " + describe_threads(at_barrier) +
                 " wait at the __syncthreads() of " + describe_site(site) + " but threads " + describe_threads(done) +
                 " have returned (every thread of a block must reach each __syncthreads())",
             at_barrier[0], done[0]);
        report_sites(site, Site{nullptr, 0});
        return false;
    }
    // Threads waiting at two or more __syncthreads() sites (the two halves of a block in double-buffered
    // code): CUDA leaves it undefined, GPUs from sm_70 on count every __syncthreads() as one barrier and
    // release them together. So does the simulator, with a warning; checks="strict" refuses it.
    const Site& site = S->fibers[at_barrier[0]].site;
    std::vector<int> here, elsewhere;
    for (int t : at_barrier) (same_site(S->fibers[t].site, site) ? here : elsewhere).push_back(t);
    if (!elsewhere.empty()) {
        const Site& other = S->fibers[elsewhere[0]].site;
        std::string sites = "threads " + describe_threads(here) + " wait at the __syncthreads() of " +
                            describe_site(site) + " and threads " + describe_threads(elsewhere) + " at the one of " +
                            describe_site(other);
        if (S->strict) {
            fail(kSynccheck,
                 "barrier divergence in " + describe_block() + ": " + sites +
                     " (all threads of a block must reach the same __syncthreads(); checks=\"strict\" refuses "
                     "what GPUs from sm_70 on allow)",
                 here[0], elsewhere[0]);
            report_sites(site, other);
            return false;
        }
        std::string a = describe_site(site), b = describe_site(other);
        warn(kBarrierSites, a < b ? a + " " + b : b + " " + a,
             "two barrier sites in " + describe_block() + ": " + sites +
                 "; released together, as GPUs from sm_70 on do (CUDA leaves this undefined: older GPUs hang or "
                 "misbehave). checks=\"strict\" makes it an error");
    }
    S->epoch = next_epoch(), ++S->barriers;
    for (int t : at_barrier) {
        S->fibers[t].state = kReady;
        runnable.push_back(t);
    }
    return true;
}

void start_block_checks();  // below, with the checks

void begin_block(Scheduler* S, int n) {
    S->epoch = next_epoch();
    if (S->checks) start_block_checks();
    S->queue.resize(n);
    for (int t = 0; t < n; ++t) {
        S->fibers[t].state = kNew;
        S->queue[t] = t;
    }
    S->free_stacks.clear();
    for (int i = (int)S->stacks.size() - 1; i >= 0; --i) S->free_stacks.push_back(i);
}

// Runs rounds until every thread of the block has returned (true) or waits at grid.sync() (true, with
// S->queue empty and some thread kAtGridBarrier), or something failed (false, S->error says what).
bool continue_block(Scheduler* S, int n) {
    while (!S->queue.empty()) {  // one round: every runnable thread runs until it returns or waits
        shuffle(S, S->queue);
        S->next = 0;
        S->failed = false;
        yield_to_next(S, &S->scheduler_sp);
        if (S->failed) return false;
        S->queue.clear();
        if (!release_barriers(S, n, S->queue)) return false;
    }
    return true;
}

bool run_block(Scheduler* S, int n) {
    begin_block(S, n);
    return continue_block(S, n);
}

const size_t kMaxDynamicShared = 48 * 1024;
const unsigned char kCanary = 0xA5;

}  // namespace

// These run on a fiber (called from kernel code), so they reach the scheduler through the stack header.
void syncthreads(Site site) {
    Scheduler* const S = fiber_scheduler();
    if (S->checks) resolve_pending_races();
    Fiber& me = S->fibers[S->running];
    me.state = kAtBarrier;
    me.site = site;
    yield_to_next(S, &me.sp);
}

unsigned int warp_lanes() {
    Scheduler* const S = fiber_scheduler();
    unsigned int in_warp = std::min(32u, (unsigned int)S->fibers.size() - warp_base());
    return in_warp == 32 ? 0xffffffffu : (1u << in_warp) - 1u;
}

void syncwarp(unsigned int mask, Site site) {
    Scheduler* const S = fiber_scheduler();
    if (S->checks) resolve_pending_races();
    Fiber& me = S->fibers[S->running];
    me.state = kAtWarpBarrier;
    me.site = site;
    me.warp_mask = mask & warp_lanes();
    yield_to_next(S, &me.sp);
}

unsigned long long* warp_slots() { return fiber_scheduler()->warp_slots.data(); }
unsigned int lane_id() { return (unsigned int)fiber_scheduler()->running % 32u; }
unsigned int warp_base() { return (unsigned int)fiber_scheduler()->running - lane_id(); }
unsigned int thread_rank() { return (unsigned int)fiber_scheduler()->running; }

unsigned int converged_lanes(const char* file, int line) {
    Scheduler* const S = fiber_scheduler();
    Fiber& me = S->fibers[S->running];
    if (S->checks) resolve_pending_races();
    me.state = kAtWarpBarrier;
    me.converging = true, me.site = Site{file, line};
    yield_to_next(S, &me.sp);
    return me.warp_mask;
}

// __trap() and a failed assert(): the launch ends with an error naming the thread and the source line.
const int kTrapped = 1000;  // what sigsetjmp returns after trap(), unlike any signal number

void trap(const char* what, const char* file, int line) {
    fail(kTrap, std::string(what) + " at " + file + ":" + std::to_string(line) + " in " + describe_block() +
                    ", thread " + describe_thread(S->running),
         S->running);
    S->report.line = line;
    siglongjmp(S->crash_jump, kTrapped);
}

}  // namespace sim_rt

// ---- guard zones around the arrays -----------------------------------------------------------------------
// Every array argument runs on a copy placed between two guard zones filled with canary bytes. After the
// launch, a changed canary is an out-of-bounds write. Arguments that overlap in host memory (y = x for an
// in-place kernel) share one copy, so the kernel sees the aliasing it would see on a GPU. Copying and the
// canary check cost at most about 5% of a LeNet-5 training run on the simulator (README, "The simulator").
namespace sim_rt {
namespace {

const size_t kGuardBytes = 4096;
const size_t kAlignment = 256;  // cudaMalloc's alignment, which vectorised loads may rely on

struct HostBuffer {  // filled in by launcher.py: one run of host memory holding one or more array arguments
    unsigned char* data;
    unsigned long long bytes;
    int read_only;      // every argument in it is a const T*: it must come back unchanged
    const char* names;  // the arguments, for messages: "'y' (float*, 100 elements)"
    unsigned char* written;  // initcheck: one flag per byte, 0 = never written (sim.empty); NULL: not tracked
};

// Beyond the canary bytes, each copy has kGuardPageBytes of inaccessible pages on either side: a write (or
// read) that lands there faults at once and is reported with the array's name (on_crash), instead of
// corrupting whatever memory lies next to the copy, such as the Python heap.
const size_t kGuardPageBytes = 1 << 20;
struct GuardedCopy {
    unsigned char* mapping = nullptr;  // [guard pages | canaries | data | canaries | slack | guard pages]
    size_t size = 0;
    uintptr_t data = 0, bytes = 0;     // where this launch's data lies in it
};
std::vector<GuardedCopy> guarded_copies;  // reused from launch to launch

size_t round_up_to_pages(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + page - 1) / page * page;
}

unsigned char* make_guarded_copy(int index, const HostBuffer& host) {
    if ((int)guarded_copies.size() <= index) guarded_copies.resize(index + 1);
    GuardedCopy& copy = guarded_copies[index];
    size_t inside = round_up_to_pages(host.bytes + 2 * kGuardBytes);  // canaries, data, canaries
    size_t needed = inside + 2 * kGuardPageBytes;
    if (copy.size < needed) {
        if (copy.mapping) munmap(copy.mapping, copy.size);
        void* mapped = mmap(nullptr, needed, PROT_NONE, MAP_PRIVATE | MAP_ANON | MAP_NORESERVE, -1, 0);
        if (mapped == MAP_FAILED) throw std::bad_alloc();
        copy.mapping = static_cast<unsigned char*>(mapped), copy.size = needed;
    }
    // Page-aligned, so aligned to cudaMalloc's 256 bytes too; the rest of the mapping stays inaccessible.
    unsigned char* start = copy.mapping + kGuardPageBytes;
    mprotect(copy.mapping, copy.size, PROT_NONE);
    mprotect(start, inside, PROT_READ | PROT_WRITE);
    memset(start, kCanary, kGuardBytes);
    memcpy(start + kGuardBytes, host.data, host.bytes);
    memset(start + kGuardBytes + host.bytes, kCanary, kGuardBytes);
    copy.data = reinterpret_cast<uintptr_t>(start + kGuardBytes), copy.bytes = host.bytes;
    return start + kGuardBytes;
}

// The guarded copy of the launch's `count` arrays whose mapping holds `address`, or -1.
int guarded_copy_at(uintptr_t address, int count) {
    for (size_t b = 0; b < guarded_copies.size() && (int)b < count; ++b) {
        uintptr_t start = reinterpret_cast<uintptr_t>(guarded_copies[b].mapping);
        if (address >= start && address < start + guarded_copies[b].size) return (int)b;
    }
    return -1;
}

// Checks the guards of a copy; false (with S->error set) when the kernel misbehaved. The results are copied
// back only once every copy has passed (copy_back), so a failed launch leaves every array as it was.
bool check_guards(int index, const HostBuffer& host, unsigned char* copy) {
    const unsigned char* before = copy - kGuardBytes;
    const unsigned char* after = copy + host.bytes;
    for (size_t k = 0; k < kGuardBytes; ++k) {
        if (before[k] != kCanary) {
            fail(kMemcheck,
                 "wrote before the start of argument " + std::string(host.names) +
                     ": an out-of-bounds write reaching " + std::to_string(kGuardBytes - k) + " byte(s) before the array",
                 -1);
            S->report.buffer = index, S->report.offset = -(long long)(kGuardBytes - k), S->report.is_write = 1;
            return false;
        }
    }
    for (size_t k = kGuardBytes; k > 0; --k) {
        if (after[k - 1] != kCanary) {
            fail(kMemcheck,
                 "wrote past the end of argument " + std::string(host.names) +
                     ": an out-of-bounds write reaching " + std::to_string(k) + " byte(s) after the array",
                 -1);
            S->report.buffer = index, S->report.offset = (long long)(host.bytes + k - 1), S->report.is_write = 1;
            return false;
        }
    }
    if (host.read_only) {
        if (memcmp(copy, host.data, host.bytes) != 0) {
            fail(kMemcheck, "wrote to argument " + std::string(host.names) + ", declared const", -1);
            S->report.buffer = index, S->report.is_write = 1;
            return false;
        }
    }
    return true;
}

void copy_back(const HostBuffer& host, const unsigned char* copy) {
    if (!host.read_only) memcpy(host.data, copy, host.bytes);
}

// Canary bytes after the requested dynamic shared memory catch a kernel that writes past it.
void guard_dynamic_shared(unsigned int bytes) {
    for (int i = 0; i < dynamic_shared_count(); ++i)
        memset(dynamic_shared_address(i) + bytes, kCanary, kMaxDynamicShared - bytes);
}

bool check_dynamic_shared(unsigned int bytes) {
    for (int i = 0; i < dynamic_shared_count(); ++i) {
        const unsigned char* tail = dynamic_shared_address(i) + bytes;
        for (size_t k = 0; k < kMaxDynamicShared - bytes; ++k) {
            if (tail[k] != kCanary) {
                fail(kMemcheck, "", -1);
                S->report.buffer = -2, S->report.offset = (long long)(bytes + k), S->report.is_write = 1;
                S->error = "wrote past the end of the dynamic shared memory '" +
                          std::string(dynamic_shared_name(i)) + "' (shared_mem=" + std::to_string(bytes) +
                          " bytes; a write at byte offset " + std::to_string(bytes + k) + ")";
                return false;
            }
        }
    }
    return true;
}

// ---- running the blocks ----------------------------------------------------------------------------------
// What every OS thread of a launch reads (written before they start), and the launch's first failure.
struct Launch {
    void (*thread_body)(void**) = nullptr;
    void** args = nullptr;
    dim3 grid_dim, block_dim;
    int threads_per_block = 0;
    int checks = 0;
    bool strict = false;
    unsigned int dynamic_shared_bytes = 0;
    unsigned long long seed = 0;
    bool cooperative = false;           // enable_cooperative_groups: every block resident at once (grid.sync())
    const HostBuffer* hosts = nullptr;  // the launch's arrays (for messages)
    int buffer_count = 0;
    std::vector<unsigned long long> order;          // the linear block indices in the order they are taken
    std::atomic<unsigned long long> next_position;  // the next position of `order` to take
    // The failure at the lowest position of `order` wins, so the error does not depend on which OS thread
    // got there first: it is the one a serial run in the same order reports. Positions after it are skipped;
    // positions before it were all taken already (positions are taken in increasing order) and run to the end.
    std::atomic<unsigned long long> failed_position;
    std::mutex failure_lock;
    std::string error;
    Report report;
};
Launch L;

// The shared memory of a block of a cooperative launch (and initcheck's flags for it), kept while other
// blocks use the OS thread's copy (with the checks, below).
struct SharedImage {
    std::vector<unsigned char> bytes, written;
};
void find_module_memory();
void save_shared(SharedImage& image);
void restore_shared(const SharedImage& image);

void record_failure(unsigned long long position) {
    std::lock_guard<std::mutex> hold(L.failure_lock);
    if (position >= L.failed_position.load()) return;
    L.failed_position.store(position);
    L.error = S->error, L.report = S->report;
}

thread_local uintptr_t fault_address = 0;  // of the last SIGSEGV or SIGBUS on this OS thread

void on_crash(int signal_number, siginfo_t* info, void*) {
    fault_address = reinterpret_cast<uintptr_t>(info->si_addr);
    siglongjmp(S->crash_jump, signal_number);
}

// Words for a fault at `address`: in the guard pages of an array argument (how far from it), or elsewhere.
// An unchecked launch sees writes up to 4 KiB from an array (canaries) and any access that lands in the
// guard pages beyond; memcheck sees every access.
std::string describe_fault(uintptr_t address, const HostBuffer* hosts, int count) {
    int b = guarded_copy_at(address, count);
    std::string unseen =
        ". Without checks the simulator sees writes up to 4 KiB past an array and accesses that land in its "
        "guard pages (1 MiB on either side); reads nearer, and accesses elsewhere, go unseen: load the module "
        "with checks=\"memcheck\" to have every access checked, with its thread and line";
    if (b < 0 || hosts == nullptr) {
        char text[64];
        snprintf(text, sizeof text, "0x%llx", (unsigned long long)address);
        return std::string(" at address ") + text + ", outside every array argument" + unseen;
    }
    const GuardedCopy& copy = guarded_copies[b];
    std::string where = address < copy.data
                            ? std::to_string(copy.data - address) + " byte(s) before the start of argument "
                            : std::to_string(address - copy.data - copy.bytes) + " byte(s) past the end of argument ";
    return " in the guard pages " + where + hosts[b].names + unseen;
}

// Ctrl-C during a launch. A kernel that loops forever never returns to Python, which only looks at its
// signals between bytecodes: so the handler ends the share of the thread it lands on (as a crash does), and
// passes SIGINT on to every other thread running blocks. Python is told afterwards (run_blocks).
const int kMaxShareThreads = 1024;
pthread_t share_threads[kMaxShareThreads];  // the threads running a share of this launch ...
std::atomic<int> share_count{0};            // ... their number
std::atomic<bool> interrupted{false};
thread_local volatile sig_atomic_t in_share = 0;  // this thread runs blocks: its crash_jump is valid

void on_interrupt(int signal_number) {
    if (!interrupted.exchange(true)) {
        int n = std::min(share_count.load(), kMaxShareThreads);
        for (int i = 0; i < n; ++i)
            if (!pthread_equal(share_threads[i], pthread_self())) pthread_kill(share_threads[i], signal_number);
    }
    if (in_share) siglongjmp(S->crash_jump, signal_number);
}

uint3 block_index(unsigned long long b) {  // x fastest, as on the GPU
    const dim3& g = L.grid_dim;
    return uint3{(unsigned)(b % g.x), (unsigned)(b / g.x % g.y), (unsigned)(b / ((unsigned long long)g.x * g.y))};
}

// A cooperative launch (enable_cooperative_groups) on the calling OS thread: every block has a scheduler of
// its own, and they take turns, each running until all its threads have returned or wait at grid.sync().
// Then grid.sync() releases them all. The blocks share the OS thread's __shared__ variables, so each
// block's shared memory is saved while the others run. `position`: of the block running, for a crash report.
bool run_cooperative(Scheduler* own, int n, volatile unsigned long long* position) {
    static thread_local std::vector<std::unique_ptr<Scheduler>> schedulers;  // their stacks are reused
    const size_t blocks = L.order.size();
    while (schedulers.size() < blocks) schedulers.emplace_back(new Scheduler);
    std::vector<SharedImage> images(blocks);
    find_module_memory();
    for (size_t p = 0; p < blocks; ++p) {
        Scheduler* B = schedulers[p].get();
        B->thread_body = own->thread_body, B->args = own->args, B->checks = own->checks, B->strict = own->strict;
        B->current = own->current;
        B->current.block_idx = block_index(L.order[p]);
        B->fibers.assign(n, Fiber());
        B->thread_indices = own->thread_indices;
        B->rng = L.seed ^ (L.order[p] + 1) * 0xD1B54A32D192ED03ull;
        B->error.clear(), B->report = Report{};
        memcpy(&B->crash_jump, &own->crash_jump, sizeof(sigjmp_buf));  // a crash returns to run_share
    }
    for (bool first = true;; first = false) {
        std::vector<size_t> parked;
        for (size_t p = 0; p < blocks; ++p) {
            S = schedulers[p].get();
            if (!first && S->queue.empty()) continue;  // returned
            *position = p;
            restore_shared(images[p]);
            if (first) begin_block(S, n);
            if (!continue_block(S, n)) return false;
            save_shared(images[p]);
            bool waits = std::any_of(S->fibers.begin(), S->fibers.end(), [](const Fiber& f) { return f.state == kAtGridBarrier; });
            if (waits) parked.push_back(p);
        }
        if (parked.empty()) return true;
        for (size_t p = 0; p < blocks; ++p) {  // a block whose threads all returned never reaches grid.sync()
            Scheduler* B = schedulers[p].get();
            bool waits = std::any_of(B->fibers.begin(), B->fibers.end(), [](const Fiber& f) { return f.state == kAtGridBarrier; });
            if (waits) continue;
            S = schedulers[parked[0]].get();
            const uint3& other = B->current.block_idx;
            fail(kSynccheck,
                 "grid barrier divergence: the threads of " + describe_block() + " wait at the grid.sync() of " +
                     describe_site(S->fibers[0].site) + " but those of block (" + std::to_string(other.x) + "," +
                     std::to_string(other.y) + "," + std::to_string(other.z) +
                     ") have returned (every thread of the grid must reach each grid.sync())",
                 0);
            report_sites(S->fibers[0].site, Site{nullptr, 0});
            *position = parked[0];
            return false;
        }
        for (size_t p : parked) {  // grid.sync(): every block passes it
            Scheduler* B = schedulers[p].get();
            B->epoch = next_epoch(), ++B->barriers;
            for (int t = 0; t < n; ++t) B->fibers[t].state = kReady, B->queue.push_back(t);
        }
    }
}

}  // namespace

// grid.sync() of cooperative groups: waits until every thread of the grid has reached it.
void grid_sync(Site site) {
    if (!L.cooperative)
        trap("grid.sync() needs a cooperative launch: load the module with enable_cooperative_groups=True "
             "(sim.load_module(..., enable_cooperative_groups=True), as cupy.RawModule takes it)",
             site.file, site.line);
    Scheduler* const S = fiber_scheduler();
    if (S->checks) resolve_pending_races();
    Fiber& me = S->fibers[S->running];
    me.state = kAtGridBarrier;
    me.site = site;
    yield_to_next(S, &me.sp);
}

bool cooperative_launch() { return L.cooperative; }

namespace {
// One OS thread's share of a launch: takes the next block in the shuffled order until none is left (or a
// block at an earlier position failed). A fault inside a kernel (an invalid address, a stack overflow, an
// integer division by zero) jumps back here instead of killing Python; the handler runs on this OS thread's
// own signal stack, since the fault may be an overflow of the fiber's stack.
void run_share() {
    use_this_threads_scheduler();
    S->thread_body = L.thread_body, S->args = L.args, S->checks = L.checks, S->strict = L.strict;
    S->error.clear();
    S->report = Report{};
    S->current.grid_dim = L.grid_dim, S->current.block_dim = L.block_dim;
    int n = L.threads_per_block;
    S->fibers.assign(n, Fiber());
    S->thread_indices.resize(n);
    for (int t = 0; t < n; ++t)
        S->thread_indices[t] = uint3{t % L.block_dim.x, (t / L.block_dim.x) % L.block_dim.y,
                                    t / (L.block_dim.x * L.block_dim.y)};
    guard_dynamic_shared(L.dynamic_shared_bytes);

    static thread_local std::vector<char> signal_stack(64 * 1024);
    stack_t alt{}, old_alt{};
    alt.ss_sp = signal_stack.data();
    alt.ss_size = signal_stack.size();
    sigaltstack(&alt, &old_alt);
    unsigned long long blocks = L.order.size();
    volatile unsigned long long position = blocks;  // read after a siglongjmp, so kept in memory
    int crash = sigsetjmp(S->crash_jump, 1);
    if (crash == 0) {
        int slot = share_count.fetch_add(1);
        if (slot < kMaxShareThreads) share_threads[slot] = pthread_self();
        in_share = 1;
        if (interrupted.load()) siglongjmp(S->crash_jump, SIGINT);  // Ctrl-C came before this thread joined
        if (L.cooperative && !run_cooperative(S, n, &position)) record_failure(position);
        for (; !L.cooperative;) {
            position = L.next_position.fetch_add(1);
            if (position >= blocks || position > L.failed_position.load()) break;
            unsigned long long b = L.order[position];
            S->current.block_idx = block_index(b);
            S->rng = L.seed ^ (b + 1) * 0xD1B54A32D192ED03ull;  // this block's thread order: (seed, index) only
            if (!run_block(S, n)) {
                record_failure(position);
                break;
            }
        }
        // A write past the dynamic shared memory, found after the blocks: after every block in the order.
        if (!check_dynamic_shared(L.dynamic_shared_bytes)) record_failure(blocks);
    } else if (crash == SIGINT) {
        fail(kInterrupted, "was interrupted (Ctrl-C) in " + describe_block(), S->running);
        record_failure(position);
    } else {
        if (crash != kTrapped) {  // else S->error says what
            const uint3& t = S->current.thread_idx;
            const char* what = crash == SIGFPE ? "an arithmetic fault (an integer division by zero?)"
                                               : "a memory fault (an invalid address, or a stack overflow from "
                                                 "large local arrays)";
            fail(kCrash, "", S->running);
            S->error = std::string("crashed with ") + what + " in " + describe_block() + ", thread (" +
                      std::to_string(t.x) + "," + std::to_string(t.y) + "," + std::to_string(t.z) + ")";
            if (crash != SIGFPE) {
                S->error += describe_fault(fault_address, L.hosts, L.buffer_count);
                S->report.buffer = guarded_copy_at(fault_address, L.buffer_count);
            }
        }
        record_failure(position);
    }
    in_share = 0;
    sigaltstack(&old_alt, nullptr);
    S->checks = 0, S->running = -1;
    use_this_threads_scheduler();  // a cooperative launch left S at one of its blocks' schedulers
    S->checks = 0, S->running = -1;
}

// The pool: OS threads that wait for a launch, run their share, and wait again. It lives as long as the
// process (never destroyed, so that exiting Python does not wait for it), one per loaded module. A child
// made by fork() has none of its parent's threads: it starts a pool of its own.
struct Pool {
    pid_t owner = getpid();
    std::mutex lock;
    std::condition_variable wake, finished;
    unsigned long long generation = 0;  // +1 per launch that uses the pool
    int wanted = 0;                     // how many of the pool's threads may take part in this launch
    int running = 0;                    // ... have joined it and not finished their share yet
    bool closed = false;                // the caller has finished its share: late threads stay out
    int size = 0;
};
Pool& pool() {
    static Pool* p = new Pool;
    if (p->owner != getpid()) p = new Pool;  // the parent's pool, copied by fork() without its threads
    return *p;
}

void pool_thread(int index) {
    Pool& p = pool();
    unsigned long long seen = 0;
    for (;;) {
        {
            std::unique_lock<std::mutex> hold(p.lock);
            p.wake.wait(hold, [&] { return p.generation != seen; });
            seen = p.generation;
            // A thread woken after the caller ran out of blocks would only make it wait (a busy machine
            // may take milliseconds to schedule it): it skips this launch.
            if (index >= p.wanted || p.closed) continue;
            ++p.running;
        }
        run_share();
        std::lock_guard<std::mutex> hold(p.lock);
        if (--p.running == 0) p.finished.notify_all();
    }
}

// Runs every block on `threads` OS threads (the caller's and threads - 1 of the pool's), with the crash
// handlers installed for the whole process meanwhile. Returns false with S->error and S->report set.
bool run_blocks(int threads) {
    unsigned long long blocks = (unsigned long long)L.grid_dim.x * L.grid_dim.y * L.grid_dim.z;
    L.order.resize(blocks);
    for (unsigned long long i = 0; i < blocks; ++i) L.order[i] = i;
    S->rng = L.seed;
    shuffle(S, L.order);
    L.next_position.store(0);
    L.failed_position.store(~0ull);
    if ((unsigned long long)threads > blocks) threads = (int)blocks;

    struct sigaction action {}, old_segv{}, old_bus{}, old_fpe{}, interrupt{}, old_int{};
    action.sa_sigaction = on_crash;
    action.sa_flags = SA_ONSTACK | SA_NODEFER | SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &old_segv);
    sigaction(SIGBUS, &action, &old_bus);
    sigaction(SIGFPE, &action, &old_fpe);
    share_count.store(0);
    interrupted.store(false);
    interrupt = action;
    interrupt.sa_handler = on_interrupt;
    interrupt.sa_flags &= ~SA_SIGINFO;
    sigaction(SIGINT, &interrupt, &old_int);
    Pool& p = pool();
    if (threads > 1) {
        std::lock_guard<std::mutex> hold(p.lock);
        for (; p.size < threads - 1; ++p.size) std::thread(pool_thread, p.size).detach();
        p.wanted = threads - 1;
        p.closed = false;
        ++p.generation;
        p.wake.notify_all();
    }
    run_share();
    if (threads > 1) {
        std::unique_lock<std::mutex> hold(p.lock);
        p.closed = true;
        p.finished.wait(hold, [&] { return p.running == 0; });
    }
    sigaction(SIGSEGV, &old_segv, nullptr);
    sigaction(SIGBUS, &old_bus, nullptr);
    sigaction(SIGFPE, &old_fpe, nullptr);
    sigaction(SIGINT, &old_int, nullptr);
    if (L.failed_position.load() == ~0ull) {
        // Ctrl-C after every block had run: Python's own handler is told, as if it had come a moment later.
        if (interrupted.load()) pthread_kill(pthread_self(), SIGINT);
        return true;
    }
    S->error = L.error, S->report = L.report;
    return false;
}

}  // namespace
}  // namespace sim_rt

// ---- the checks (the checked build) -----------------------------------------------------------------------
// A checked build compiles the kernel file with -fsanitize=thread: g++ then calls __tsan_read<N>(address)
// before every load of N bytes and __tsan_write<N>(address) before every store (the _unaligned_ forms where
// the type's alignment is less than N), and the atomics of cuda_sim.h call atomic_access; this runtime
// answers:
//   memcheck   the address must lie inside an array argument, the shared memory the launch has (static, or
//              dynamic up to shared_mem bytes), the running thread's stack or the module's own globals; an
//              access to an array argument or shared memory must be aligned to its size, as on a GPU;
//   racecheck  two threads of a block touching the same byte of shared memory or of an array, at least one
//              writing (an atomic counts as a write, but two atomics never race), with no __syncthreads()
//              between them (nor a __syncwarp() for lanes of one warp);
//   initcheck  a read of shared memory that no thread of the block has written, and a read of an array
//              argument from sim.empty (a tracked allocation, launcher.py) of a byte that no kernel has
//              written: such a buffer's flags are copied in at the start of the launch, set by every store
//              and copied back with the results, so a failed launch leaves them as they were.
// The shuffles and votes of cuda_sim.h are not instrumented (SIM_UNCHECKED): they are synchronised by
// definition, and their slots are the scheduler's memory.
namespace sim_rt {
namespace {

enum CheckBits { kCheckMemcheck = 1, kCheckRacecheck = 2, kCheckInitcheck = 4, kCheckRecord = 8, kCheckStrict = 16 };
const int kCooperativeLaunch = 32;  // not a check: the launch's flag for enable_cooperative_groups (launcher.py)

struct Range {
    uintptr_t start, end;
};
struct AccessEvent {  // one load, store or atomic (record.py reads these fields)
    unsigned long long block;  // linear block index (x + y * gridDim.x + ...)
    unsigned long long pc;     // code address (offset in the library)
    long long offset;          // byte offset in the array argument, or in the block's shared memory
    int thread;                // linear thread index in the block
    int buffer;                // index of the host buffer, or -3: shared memory
    int size;                  // bytes
    int kind;                  // 0 load, 1 store, 2 atomic
};
struct CheckedBuffer {
    uintptr_t data, end;                // the array(s) the kernel may touch
    std::string names;                  // "'y' (float*, 100 elements)", for messages
    bool read_only;                     // every argument in it is const: no store can race (nor go unseen)
    std::vector<unsigned char> written;  // initcheck: this launch's copy of the flags; empty: not tracked
};

struct Checks {
    std::vector<CheckedBuffer> buffers;  // indexed as the host buffers
    Range tls{0, 0};                     // this module's thread-local block: all of its __shared__ memory
    std::vector<Range> dynamic_shared;   // each extern __shared__ array, up to the launch's shared_mem bytes
    std::vector<Range> dynamic_reserve;  // ... and up to its 48 KiB reservation
    std::vector<Range> module;           // the module's loaded segments (globals, __constant__, literals)
    std::vector<unsigned char> shared_written;  // initcheck: one flag per byte of the thread-local block
    struct Access {  // 16 bytes: a cell's three fit in one cache line with the cell's address
        unsigned int epoch = 0, warp_epoch = 0;  // their low 32 bits (a cell lives for one block)
        unsigned int pc = 0;                     // offset of the code in the library
        short thread = -1;
        bool atomic = false;
    };
    struct Cell {  // racecheck: the last write and up to two reads of one byte in this barrier interval
        Access write, reads[2];
    };
    // racecheck's cells by address, for the block running: an open-addressing hash table, emptied at each
    // block start by a new generation (O(1)), so it stays as small as one block's footprint and in cache.
    // (A std::unordered_map, a node allocated per address, took more than half of a checked vector add.)
    struct CellTable {
        struct Slot {  // 64 bytes, one cache line
            uintptr_t address = 0;
            unsigned int generation = 0;  // the slot holds a cell of this generation; older: free
            Cell cell;
        };
        std::vector<Slot> slots = std::vector<Slot>(1024);
        size_t used = 0;
        unsigned int generation = 1;
        int shift = 64 - 10;  // 64 - log2(slots.size())

        Cell& operator[](uintptr_t address) {
            if (2 * (used + 1) > slots.size()) grow();
            size_t mask = slots.size() - 1;
            for (size_t i = (address * 0x9E3779B97F4A7C15ull) >> shift;; i = (i + 1) & mask) {
                Slot& slot = slots[i];
                if (slot.generation != generation) {
                    slot.address = address, slot.generation = generation, slot.cell = Cell{};
                    ++used;
                    return slot.cell;
                }
                if (slot.address == address) return slot.cell;
            }
        }
        void clear() {
            if (++generation == 0) slots.assign(slots.size(), Slot{}), generation = 1;  // wrapped around
            used = 0;
        }
        void grow() {
            std::vector<Slot> old;
            old.swap(slots);
            slots.assign(2 * old.size(), Slot{});
            --shift, used = 0;
            for (const Slot& slot : old)
                if (slot.generation == generation) (*this)[slot.address] = slot.cell;
        }
    };
    CellTable cells;
    // racecheck: a store by the running thread to a granule that another thread stored to in the same
    // barrier interval. The store has not happened yet when its hook runs, so whether it stores the value
    // that is there (a benign race: flags, every lane writing one result) is decided at the thread's next
    // access, barrier or return (resolve_pending_races).
    struct PendingRace {
        uintptr_t address;
        size_t size;        // of the granule: 1 or 4 bytes
        unsigned char before[4];
        Access other;
        uintptr_t pc;
        size_t access_size;
        int region;
        long long offset;
    };
    std::vector<PendingRace> pending;
    bool strict = false;     // checks="strict": benign races are errors
    bool launching = false;  // a checked launch is running (its kernel code calls check_access)
    std::vector<AccessEvent> record;  // the access record: every access to an array argument or shared memory
    uintptr_t library_base = 0;
};
Checks C;
thread_local char tls_anchor;  // taking its address makes this OS thread allocate the module's TLS block

// ---- static shared arrays by name (memcheck) ----
// Each static __shared__ array is a thread_local variable, whose symbol (STT_TLS) in the module's symbol
// table holds its offset in the thread-local block and its size. A checked build has a redzone before and
// after each declaration (compiler.py, with_shared_redzones), so a thread that runs off either end of an
// array lands in a redzone (or in the padding between variables) instead of in the neighbouring array.
struct SharedArray {
    uintptr_t start, end;  // offsets in the thread-local block
    std::string name;      // "'tile_a' in gemm_tiled<float>"
    bool redzone;          // no kernel may touch it
    bool nameable;         // a kernel's __shared__ array, not a redzone or one of this runtime's variables
};
std::vector<SharedArray> shared_arrays;  // sorted by start; empty when the symbol table cannot be read
long long tls_anchor_offset = -1;        // where tls_anchor (above) lies in the block, from the same table

// "'tile_a' in gemm_tiled<float>" for the symbol of `__shared__ T tile_a[..]` in gemm_tiled<float>.
std::string shared_array_name(const char* symbol) {
    int status = 0;
    char* demangled = abi::__cxa_demangle(symbol, nullptr, nullptr, &status);
    std::string name = status == 0 && demangled ? demangled : symbol;
    free(demangled);
    size_t params = name.rfind(')'), scope = name.rfind("::");
    if (scope == std::string::npos || (params != std::string::npos && scope < params)) return name;
    std::string function = name.substr(0, std::min(name.find('('), scope));
    if (function.rfind("void ", 0) == 0) function = function.substr(5);
    return "'" + name.substr(scope + 2) + "' in " + function;
}

// Calls visit(symbol, raw name, whether its section is writable) for each defined symbol in the symbol table
// of the library file at `path` (the name the library was loaded under may be gone: it is built under a
// temporary name, then renamed).
template <class Visit>
void for_each_symbol(const char* path, Visit visit) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    struct stat info {};
    void* mapped = fstat(fd, &info) == 0 ? mmap(nullptr, info.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (mapped == MAP_FAILED) return;
    const unsigned char* file = static_cast<const unsigned char*>(mapped);
    const ElfW(Ehdr)* header = reinterpret_cast<const ElfW(Ehdr)*>(file);
    const ElfW(Shdr)* sections = reinterpret_cast<const ElfW(Shdr)*>(file + header->e_shoff);
    for (int i = 0; memcmp(header->e_ident, ELFMAG, SELFMAG) == 0 && i < header->e_shnum; ++i) {
        if (sections[i].sh_type != SHT_SYMTAB) continue;
        const ElfW(Sym)* symbols = reinterpret_cast<const ElfW(Sym)*>(file + sections[i].sh_offset);
        const char* names = reinterpret_cast<const char*>(file + sections[sections[i].sh_link].sh_offset);
        for (size_t k = 0; k < sections[i].sh_size / sizeof(ElfW(Sym)); ++k) {
            const ElfW(Sym)& symbol = symbols[k];
            if (symbol.st_size == 0 || symbol.st_shndx == SHN_UNDEF || symbol.st_shndx >= header->e_shnum) continue;
            visit(symbol, names + symbol.st_name, (sections[symbol.st_shndx].sh_flags & SHF_WRITE) != 0);
        }
    }
    munmap(mapped, info.st_size);
}

void read_shared_arrays(const char* library) {
    shared_arrays.clear(), tls_anchor_offset = -1;
    for_each_symbol(library, [](const ElfW(Sym)& symbol, const char* raw, bool) {
        if (ELF64_ST_TYPE(symbol.st_info) != STT_TLS) return;
        if (strstr(raw, "tls_anchor")) tls_anchor_offset = (long long)symbol.st_value;
        bool redzone = strstr(raw, "sim_shared_redzone_") != nullptr, runtime = strstr(raw, "sim_rt") != nullptr;
        shared_arrays.push_back({symbol.st_value, symbol.st_value + symbol.st_size, shared_array_name(raw),
                                 redzone, !redzone && !runtime});
    });
    std::sort(shared_arrays.begin(), shared_arrays.end(),
              [](const SharedArray& x, const SharedArray& y) { return x.start < y.start; });
}

// The address of the global variable `name` (as C++ spells it: "coef", "params::scale") of the library at
// `path`, its size and whether it may be written; nullptr when the library has none of that name.
void* global_variable(const char* path, const char* name, unsigned long long* size, int* writable) {
    Dl_info info{};
    dladdr(reinterpret_cast<void*>(&read_shared_arrays), &info);
    void* found = nullptr;
    for_each_symbol(path, [&](const ElfW(Sym)& symbol, const char* raw, bool in_writable_section) {
        if (ELF64_ST_TYPE(symbol.st_info) != STT_OBJECT || found) return;
        int status = 0;
        char* demangled = abi::__cxa_demangle(raw, nullptr, nullptr, &status);
        bool same = strcmp(status == 0 && demangled ? demangled : raw, name) == 0;
        free(demangled);
        if (!same) return;
        found = static_cast<char*>(info.dli_fbase) + symbol.st_value;
        *size = symbol.st_size, *writable = in_writable_section;
    });
    return found;
}

int module_segments(dl_phdr_info* info, size_t, void*) {
    if (info->dlpi_addr != C.library_base) return 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& h = info->dlpi_phdr[i];
        if (h.p_type == PT_LOAD) C.module.push_back({info->dlpi_addr + h.p_vaddr, info->dlpi_addr + h.p_vaddr + h.p_memsz});
        if (h.p_type != PT_TLS) continue;
        // dlpi_tls_data is null for a small block that glibc placed in static TLS, when this thread's
        // table of TLS blocks was never updated (the TLS descriptors of -mtls-dialect=gnu2 do not need it):
        // then the block starts where tls_anchor lies, minus tls_anchor's offset in it.
        uintptr_t tls = reinterpret_cast<uintptr_t>(info->dlpi_tls_data);
        if (tls == 0 && tls_anchor_offset >= 0) tls = reinterpret_cast<uintptr_t>(&tls_anchor) - tls_anchor_offset;
        if (tls != 0) C.tls = {tls, tls + h.p_memsz};
    }
    return 1;
}

bool inside(const Range& r, uintptr_t a, size_t size) { return a >= r.start && a + size <= r.end; }

[[noreturn]] void check_failed(int kind, const std::string& message, uintptr_t address, size_t size, bool write,
                               uintptr_t pc, int buffer, long long offset, int other_thread = -1,
                               uintptr_t other_pc = 0, bool other_write = false) {
    fail(kind, message, S->running, other_thread);
    S->report.buffer = buffer, S->report.offset = offset, S->report.size = (int)size;
    S->report.is_write = write, S->report.other_is_write = other_write;
    S->report.pc = pc ? pc - C.library_base : 0, S->report.other_pc = other_pc ? other_pc - C.library_base : 0;
    (void)address;
    siglongjmp(S->crash_jump, kTrapped);
}

std::string access_words(size_t size, bool write) {
    return std::string(write ? "write" : "read") + " of " + std::to_string(size) + " byte(s)";
}

// Memcheck inside the thread-local block: the access must lie within one variable that is not a redzone.
// Otherwise it is reported against the nearest static shared array (offset past its end, or negative).
void check_shared_array(uintptr_t a, size_t size, bool write, uintptr_t pc) {
    if (shared_arrays.empty()) return;
    const uintptr_t first = a - C.tls.start, last = first + size;
    auto after = std::upper_bound(shared_arrays.begin(), shared_arrays.end(), first,
                                  [](uintptr_t offset, const SharedArray& x) { return offset < x.start; });
    if (after != shared_arrays.begin() && !std::prev(after)->redzone && last <= std::prev(after)->end) return;
    const SharedArray *below = nullptr, *above = nullptr;  // the nearest arrays on either side
    for (auto it = after; it != shared_arrays.begin() && !below;)
        if ((--it)->nameable) below = &*it;
    for (auto it = after; it != shared_arrays.end() && !above; ++it)
        if (it->nameable) above = &*it;
    auto gap = [](uintptr_t from, uintptr_t to) { return to > from ? to - from : 0; };
    const SharedArray* array = below;
    if (above && (!below || gap(last, above->start) < gap(below->end, first))) array = above;
    if (array == nullptr) return;
    long long offset = (long long)first - (long long)array->start;
    check_failed(kMemcheck,
                 "out-of-bounds " + access_words(size, write) + " at byte offset " + std::to_string(offset) +
                     " of __shared__ " + array->name + " (" + std::to_string(array->end - array->start) +
                     " bytes) in " + describe_block() + ", thread " + describe_thread(S->running),
                 a, size, write, pc, -3, offset);
}

// "byte 12 of __shared__ 'tile' in transpose", "byte 0 of argument 'y' (float*, 64 elements)": where address
// `a` lies, in words (region: the buffer index, or -3 for the block's shared memory).
std::string describe_location(uintptr_t a, int region) {
    if (region >= 0) return "byte " + std::to_string(a - C.buffers[region].data) + " of " + C.buffers[region].names;
    for (size_t i = 0; i < C.dynamic_reserve.size(); ++i)
        if (a >= C.dynamic_reserve[i].start && a < C.dynamic_reserve[i].end)
            return "byte " + std::to_string(a - C.dynamic_reserve[i].start) + " of dynamic shared memory '" +
                   dynamic_shared_name((int)i) + "'";
    const uintptr_t offset = a - C.tls.start;
    for (const SharedArray& array : shared_arrays)
        if (array.nameable && offset >= array.start && offset < array.end)
            return "byte " + std::to_string(offset - array.start) + " of __shared__ " + array.name;
    return "byte " + std::to_string(offset) + " of the shared memory";
}

[[noreturn]] void report_race(const Checks::Access& other, bool other_write, uintptr_t a, size_t size, bool write,
                              bool atomic, uintptr_t pc, int region, long long offset, const char* what = "") {
    std::string hazard = other_write ? (write ? "write after write" : "read after write") : "write after read";
    check_failed(kRacecheck,
                 "race (" + hazard + ") on " + describe_location(a, region) + " in " + describe_block() + ": thread " +
                     describe_thread(S->running) + " " +
                     (atomic ? "made an atomic update of " + std::to_string(size) + " byte(s)" : access_words(size, write)) +
                     " and thread " + describe_thread(other.thread) + " " +
                     (other.atomic ? "updated atomically" : other_write ? "wrote" : "read") +
                     " the same address with no __syncthreads() between them" + what,
                 a, size, write, pc, region, offset, other.thread, C.library_base + other.pc, other_write);
}

// Decides the stores that raced with another thread's store to the same granule (Checks::pending), now that
// they have happened: one that stored the value that was there already is a benign race (a warning; an error
// with checks="strict"), any other a race.
void resolve_pending_races() {
    if (C.pending.empty()) return;
    std::vector<Checks::PendingRace> pending;
    pending.swap(C.pending);
    for (const Checks::PendingRace& race : pending) {
        bool same = memcmp(reinterpret_cast<const void*>(race.address), race.before, race.size) == 0;
        if (!same || C.strict)
            report_race(race.other, true, race.address, race.access_size, true, false, race.pc, race.region,
                        race.offset, same ? " (both stored the same value: checks=\"strict\" reports it)" : "");
        std::string where = describe_location(race.address, race.region);
        warn(kBenignRace, std::to_string(race.pc - C.library_base) + " " + std::to_string(race.other.pc),
             "benign race (write after write of the same value) on " + where + " in " + describe_block() +
                 ": threads " + describe_thread(S->running) + " and " + describe_thread(race.other.thread) +
                 " stored the same value with no __syncthreads() between them (a flag, or every lane writing one "
                 "result: what the GPU stores is that value either way). checks=\"strict\" makes it an error");
    }
}

// Racecheck for one granule: compares this access with the ones earlier in the same barrier interval.
void check_race(uintptr_t a, size_t size, bool write, bool atomic, uintptr_t pc, int region, long long offset) {
    Scheduler* const S = fiber_scheduler();  // (no thread-local lookup: this runs for every access)
    Checks::Cell& cell = C.cells[a];
    const int me = S->running;
    const unsigned int epoch = (unsigned int)S->epoch, warp_epoch = (unsigned int)S->warp_epoch[me / 32];
    auto conflicts = [&](const Checks::Access& other) {
        if (other.thread < 0 || other.thread == me || other.epoch != epoch || (atomic && other.atomic)) return false;
        bool same_warp_synchronised = other.thread / 32 == me / 32 && other.warp_epoch != warp_epoch;
        return !same_warp_synchronised;
    };
    if (conflicts(cell.write)) {
        if (!write || atomic || cell.write.atomic) report_race(cell.write, true, a, size, write, atomic, pc, region, offset);
        Checks::PendingRace race{a, size, {}, cell.write, pc, size, region, offset};
        memcpy(race.before, reinterpret_cast<const void*>(a), size);
        C.pending.push_back(race);
    }
    Checks::Access now{epoch, warp_epoch, (unsigned int)(pc - C.library_base), (short)me, atomic};
    if (write) {
        for (const Checks::Access& read : cell.reads)
            if (conflicts(read)) report_race(read, false, a, size, write, atomic, pc, region, offset);
        cell.write = now;
    } else if (cell.reads[0].thread == me || cell.reads[0].epoch != S->epoch) {
        cell.reads[0] = now;
    } else {
        cell.reads[1] = now;
    }
}

// Racecheck by 4-byte granule for aligned accesses of 4 bytes or more, else byte by byte (so that threads
// writing neighbouring chars do not race); a char access overlapping a float one is not compared.
void check_races(uintptr_t a, size_t size, bool write, bool atomic, uintptr_t pc, int region, long long offset) {
    size_t step = size >= 4 && a % 4 == 0 ? 4 : 1;
    for (size_t k = 0; k < size; k += step) check_race(a + k, step, write, atomic, pc, region, offset + (long long)k);
}

// Initcheck for an array argument from sim.empty: a store sets the flags of its bytes, a load of a byte
// whose flag is unset is reported. Bytes outside the array are memcheck's business.
void check_initialised(CheckedBuffer& buffer, uintptr_t a, size_t size, bool write, uintptr_t pc, int b) {
    uintptr_t first = std::max(a, buffer.data), last = std::min(a + size, buffer.end);
    for (uintptr_t byte = first; byte < last; ++byte) {
        unsigned char& flag = buffer.written[byte - buffer.data];
        if (write) {
            flag = 1;
        } else if (!flag) {
            long long offset = (long long)(a - buffer.data);
            check_failed(kInitcheck,
                         "read of uninitialised device memory (" + access_words(size, write) + " at byte offset " +
                             std::to_string(offset) + " of " + buffer.names + "; byte " +
                             std::to_string(byte - buffer.data) +
                             " was allocated uninitialised and no kernel has written it) in " + describe_block() +
                             ", thread " + describe_thread(S->running),
                         a, size, write, pc, b, offset);
        }
    }
}

void record_access(uintptr_t pc, long long offset, int buffer, size_t size, bool write, bool atomic) {
    const uint3& b = S->current.block_idx;
    const dim3& grid = S->current.grid_dim;
    unsigned long long block = b.x + (unsigned long long)grid.x * (b.y + (unsigned long long)grid.y * b.z);
    C.record.push_back({block, pc - C.library_base, offset, S->running, buffer, (int)size, atomic ? 2 : write ? 1 : 0});
}

// A misaligned access (a float4 at a byte offset that is not a multiple of 16) faults on a GPU.
void check_alignment(uintptr_t a, size_t size, size_t alignment, bool write, uintptr_t pc, int region,
                     long long offset) {
    if (a % alignment == 0) return;
    check_failed(kMemcheck,
                 "misaligned " + access_words(size, write) + " at " + describe_location(a, region) + " (this access must lie at a multiple of " + std::to_string(alignment) + " bytes) in " +
                     describe_block() + ", thread " + describe_thread(S->running),
                 a, size, write, pc, region, offset);
}

// `alignment`: what a GPU requires of the address (1: nothing). An atomic reads and writes.
void check_access(uintptr_t a, size_t size, bool write, uintptr_t pc, size_t alignment, bool atomic = false) {
    if (!C.launching) return;  // code of the module run outside a launch (a static initialiser)
    Scheduler* const S = fiber_scheduler();  // (no thread-local lookup: this runs for every access)
    if (S->running < 0 || S->checks == 0) return;
    if (!C.pending.empty()) resolve_pending_races();  // the running thread's previous store has happened
    // Which memory: shared memory (first: tiled kernels access it most), an array argument, or else.
    const ThreadState* state = &S->current;  // what threadIdx and its kin read
    if (inside({reinterpret_cast<uintptr_t>(state), reinterpret_cast<uintptr_t>(state + 1)}, a, size)) return;
    if (a >= C.tls.start && a < C.tls.end + kGuardBytes) {
        for (size_t i = 0; i < C.dynamic_reserve.size(); ++i) {
            if (!(a + size > C.dynamic_reserve[i].start && a < C.dynamic_reserve[i].end)) continue;
            if ((S->checks & kCheckMemcheck) && !inside(C.dynamic_shared[i], a, size)) {
                long long offset = (long long)(a - C.dynamic_shared[i].start);
                check_failed(kMemcheck,
                             "out-of-bounds " + access_words(size, write) + " of dynamic shared memory '" +
                                 dynamic_shared_name((int)i) + "' at byte offset " + std::to_string(offset) +
                                 " (the launch has shared_mem=" +
                                 std::to_string(C.dynamic_shared[i].end - C.dynamic_shared[i].start) + ") in " +
                                 describe_block() + ", thread " + describe_thread(S->running),
                             a, size, write, pc, -2, offset);
            }
        }
        if ((S->checks & kCheckMemcheck) && !inside(C.tls, a, size))
            check_failed(kMemcheck,
                         "out-of-bounds " + access_words(size, write) + " past the end of the static shared memory in " +
                             describe_block() + ", thread " + describe_thread(S->running),
                         a, size, write, pc, -3, (long long)(a - C.tls.start));
        if (S->checks & kCheckMemcheck) check_shared_array(a, size, write, pc);
        size_t first = a - C.tls.start;
        if (S->checks & kCheckMemcheck) check_alignment(a, size, alignment, write, pc, -3, (long long)first);
        if (S->checks & kCheckInitcheck) {
            for (size_t k = 0; k < size; ++k) {
                if (write && !atomic) {
                    C.shared_written[first + k] = 1;
                } else if (!C.shared_written[first + k]) {
                    check_failed(kInitcheck,
                                 "read of uninitialised shared memory (" + access_words(size, write) + ": no thread of " +
                                     "the block wrote " + describe_location(a + k, -3) + " before) in " +
                                     describe_block() + ", thread " +
                                     describe_thread(S->running),
                                 a, size, write, pc, -3, (long long)first);
                }
                if (atomic) C.shared_written[first + k] = 1;
            }
        }
        if (S->checks & kCheckRacecheck) check_races(a, size, write, atomic, pc, -3, (long long)first);
        if (S->checks & kCheckRecord) record_access(pc, (long long)first, -3, size, write, atomic);
        return;
    }
    // An array argument (or its guard bytes and pages)?
    for (size_t b = 0; b < C.buffers.size(); ++b) {
        const CheckedBuffer& buffer = C.buffers[b];
        long long offset = (long long)(a - buffer.data);
        // Near enough to be in its copy's guard bytes or pages: an access of this array that ran off it.
        const uintptr_t near = kGuardBytes + kGuardPageBytes;
        if (a + size <= buffer.data - near || a >= buffer.end + near) continue;
        if ((S->checks & kCheckMemcheck) && (a < buffer.data || a + size > buffer.end))
            check_failed(kMemcheck,
                         "out-of-bounds " + access_words(size, write) + " at byte offset " + std::to_string(offset) +
                             " of " + buffer.names + " in " +
                             describe_block() + ", thread " + describe_thread(S->running),
                         a, size, write, pc, (int)b, offset);
        if (S->checks & kCheckMemcheck) check_alignment(a, size, alignment, write, pc, (int)b, offset);
        if ((S->checks & kCheckInitcheck) && !buffer.written.empty()) {
            if (atomic) check_initialised(C.buffers[b], a, size, false, pc, (int)b);
            check_initialised(C.buffers[b], a, size, write, pc, (int)b);
        }
        // A const array has no stores to race with (a store into it fails the launch: check_guards).
        if ((S->checks & kCheckRacecheck) && !buffer.read_only) check_races(a, size, write, atomic, pc, (int)b, offset);
        if (S->checks & kCheckRecord) record_access(pc, offset, (int)b, size, write, atomic);
        return;
    }
    if (!(S->checks & kCheckMemcheck)) return;
    const Fiber& me = S->fibers[S->running];
    Range stack{reinterpret_cast<uintptr_t>(S->stacks[me.stack]),
                reinterpret_cast<uintptr_t>(S->stacks[me.stack]) + kFiberRegionBytes};
    if (inside(stack, a, size)) return;
    for (const Range& segment : C.module)
        if (inside(segment, a, size)) return;
    check_failed(kMemcheck,
                 "invalid " + access_words(size, write) + " at address 0x" + [&] {
                     char text[32];
                     snprintf(text, sizeof text, "%llx", (unsigned long long)a);
                     return std::string(text);
                 }() + ", outside every array argument, the shared memory and the thread's stack, in " +
                     describe_block() + ", thread " + describe_thread(S->running),
                 a, size, write, pc, -1, 0);
}

// Where this module's code, globals and thread-local block (its __shared__ memory) lie, in C.
void find_module_memory() {
    Dl_info info{};
    dladdr(reinterpret_cast<void*>(&find_module_memory), &info);
    C.library_base = reinterpret_cast<uintptr_t>(info.dli_fbase);
    C.module.clear();
    C.tls = {0, 0};
    *static_cast<char volatile*>(&tls_anchor) = 0;
    dl_iterate_phdr(module_segments, nullptr);
}

// The kernel's __shared__ variables (not the runtime's thread-local ones) and the launch's dynamic shared
// memory, as byte ranges of this OS thread's thread-local block.
std::vector<Range> block_shared_memory() {
    std::vector<Range> ranges;
    for (int i = 0; i < dynamic_shared_count(); ++i) {
        uintptr_t start = reinterpret_cast<uintptr_t>(dynamic_shared_address(i));
        ranges.push_back({start, start + L.dynamic_shared_bytes});
    }
    for (const SharedArray& array : shared_arrays) {
        Range range{C.tls.start + array.start, C.tls.start + array.end};
        bool dynamic = std::any_of(ranges.begin(), ranges.begin() + dynamic_shared_count(),
                                   [&](const Range& r) { return r.start == range.start; });
        if (array.nameable && !dynamic && C.tls.start != 0) ranges.push_back(range);
    }
    return ranges;
}

void save_shared(SharedImage& image) {
    image.bytes.clear();
    for (const Range& r : block_shared_memory())
        image.bytes.insert(image.bytes.end(), reinterpret_cast<unsigned char*>(r.start), reinterpret_cast<unsigned char*>(r.end));
    image.written = C.shared_written;
}

void restore_shared(const SharedImage& image) {
    if (image.bytes.empty()) return;  // a block that has not started: the memory is as it is
    size_t at = 0;
    for (const Range& r : block_shared_memory()) {
        memcpy(reinterpret_cast<void*>(r.start), image.bytes.data() + at, r.end - r.start);
        at += r.end - r.start;
    }
    C.shared_written = image.written;
}

void setup_checks(int checks, const HostBuffer* hosts, unsigned char* const* copies, int count,
                  unsigned int dynamic_shared_bytes) {
    S->checks = checks;
    if (!checks) return;
    find_module_memory();
    C.buffers.clear();
    for (int b = 0; b < count; ++b) {
        uintptr_t data = reinterpret_cast<uintptr_t>(copies[b]);
        C.buffers.push_back(
            {data, data + hosts[b].bytes, "argument " + std::string(hosts[b].names), hosts[b].read_only != 0, {}});
        if ((checks & kCheckInitcheck) && hosts[b].written != nullptr)
            C.buffers.back().written.assign(hosts[b].written, hosts[b].written + hosts[b].bytes);
    }
    C.dynamic_shared.clear(), C.dynamic_reserve.clear();
    for (int i = 0; i < dynamic_shared_count(); ++i) {
        uintptr_t start = reinterpret_cast<uintptr_t>(dynamic_shared_address(i));
        C.dynamic_shared.push_back({start, start + dynamic_shared_bytes});
        C.dynamic_reserve.push_back({start, start + kMaxDynamicShared});
    }
    C.shared_written.assign(C.tls.end - C.tls.start, 0);
    C.cells.clear();
    C.pending.clear();
    C.record.clear();
}

// After buffer b's results were copied back: its flags too (a launch that failed leaves them unchanged).
void copy_back_written(int checks, int b, const HostBuffer& host) {
    if (checks && !C.buffers[b].written.empty()) memcpy(host.written, C.buffers[b].written.data(), host.bytes);
}

}  // namespace

namespace {
void start_block_checks() {  // racecheck compares threads of one block: its cells start empty
    std::fill(C.shared_written.begin(), C.shared_written.end(), 0);
    C.cells.clear();
}
}  // namespace
}  // namespace sim_rt

namespace sim_rt {
void atomic_access(void* address, size_t size) {  // cuda_sim.h's atomics, in a checked build
    check_access(reinterpret_cast<uintptr_t>(address), size, true,
                 reinterpret_cast<uintptr_t>(__builtin_return_address(0)), size, true);
}
}  // namespace sim_rt

// What -fsanitize=thread calls. Only this module's calls bind to these (hidden): no ThreadSanitizer library
// is linked. g++ calls the _unaligned_ forms where it cannot prove the address aligned to the size: for a
// struct whose alignment is less than its size (float pairs, 8 bytes aligned to 4), and for a pointer made by
// arithmetic on a narrower one (`*(int*)(bytes + 1)`). A GPU needs 4-byte alignment for either when it moves
// 4 bytes or more, so that much is checked; a struct of chars at an odd address is reported too (a GPU would
// move it byte by byte).
#define SIM_TSAN_CALLBACKS(size)                                                                                \
    extern "C" __attribute__((visibility("hidden"))) void __tsan_read##size(void* a) {                         \
        sim_rt::check_access((uintptr_t)a, size, false, (uintptr_t)__builtin_return_address(0), size);         \
    }                                                                                                          \
    extern "C" __attribute__((visibility("hidden"))) void __tsan_write##size(void* a) {                        \
        sim_rt::check_access((uintptr_t)a, size, true, (uintptr_t)__builtin_return_address(0), size);          \
    }                                                                                                          \
    extern "C" __attribute__((visibility("hidden"))) void __tsan_unaligned_read##size(void* a) {               \
        sim_rt::check_access((uintptr_t)a, size, false, (uintptr_t)__builtin_return_address(0), size >= 4 ? 4 : 1); \
    }                                                                                                          \
    extern "C" __attribute__((visibility("hidden"))) void __tsan_unaligned_write##size(void* a) {              \
        sim_rt::check_access((uintptr_t)a, size, true, (uintptr_t)__builtin_return_address(0), size >= 4 ? 4 : 1); \
    }
SIM_TSAN_CALLBACKS(1)
SIM_TSAN_CALLBACKS(2)
SIM_TSAN_CALLBACKS(4)
SIM_TSAN_CALLBACKS(8)
SIM_TSAN_CALLBACKS(16)
extern "C" __attribute__((visibility("hidden"))) void __tsan_read_range(void* a, size_t size) {
    sim_rt::check_access((uintptr_t)a, size, false, (uintptr_t)__builtin_return_address(0), 1);
}
extern "C" __attribute__((visibility("hidden"))) void __tsan_write_range(void* a, size_t size) {
    sim_rt::check_access((uintptr_t)a, size, true, (uintptr_t)__builtin_return_address(0), 1);
}
extern "C" __attribute__((visibility("hidden"))) void __tsan_init() {}
extern "C" __attribute__((visibility("hidden"))) void __tsan_vptr_update(void*, void*) {}
extern "C" __attribute__((visibility("hidden"))) void __tsan_vptr_read(void*) {}

// assert() in a kernel: glibc's assert macro calls __assert_fail, which would abort the whole process. This
// module's own definition (hidden, so it binds only the module's calls) ends the launch with an error.
extern "C" __attribute__((visibility("hidden"), noreturn)) void __assert_fail(const char* assertion,
                                                                              const char* file, unsigned int line,
                                                                              const char*) noexcept {
    sim_rt::trap((std::string("assertion `") + assertion + "` failed").c_str(), file, (int)line);
}

// abort(), exit(), system(), raise() and kin in a kernel would end, signal or command the whole Python
// process. This module's own definitions (hidden, like __assert_fail's) end the launch with an error instead.
// What cannot be intercepted this way: a raw system call (syscall(), inline assembly) and a library the
// kernel loads itself.
namespace sim_rt {
[[noreturn]] void refuse_call(const char* call) {
    fail(kTrap,
         std::string(call) + " was called in " + describe_block() + ", thread " + describe_thread(S->running) +
             ": a simulated kernel may not end, signal or command the process",
         S->running);
    siglongjmp(S->crash_jump, kTrapped);
}
}  // namespace sim_rt

// (.hidden as well as the attribute: libstdc++ declares abort and exit with default visibility first, which
// the attribute alone cannot undo, and the kernel's calls would then reach libc's.)
#define SIM_REFUSED(result, name, parameters)                                                    \
    __asm__(".hidden " #name);                                                                   \
    extern "C" __attribute__((visibility("hidden"), noreturn)) result name parameters noexcept { \
        sim_rt::refuse_call(#name "()");                                                         \
    }
SIM_REFUSED(void, abort, ())
SIM_REFUSED(void, exit, (int))
SIM_REFUSED(void, _exit, (int))
SIM_REFUSED(void, _Exit, (int))
SIM_REFUSED(void, quick_exit, (int))
SIM_REFUSED(int, system, (const char*))
SIM_REFUSED(int, raise, (int))
SIM_REFUSED(int, kill, (pid_t, int))
#undef SIM_REFUSED

// ---- the C interface that launcher.py calls through ctypes -----------------------------------------------
SIM_EXPORT int sim_kernel_count() { return sim_rt::kernel_count(); }

SIM_EXPORT int sim_kernel_signature(int kernel, char* out, int out_size) {
    std::string text = sim_rt::kernel_entry(kernel).describe();
    snprintf(out, (size_t)out_size, "%s", text.c_str());
    return (int)text.size();
}

SIM_EXPORT int sim_uses_dynamic_shared() { return sim_rt::dynamic_shared_count(); }

// The access record of the last launch (record.py): how many events, a copy of them, the barriers.
SIM_EXPORT unsigned long long sim_record_size() { return sim_rt::C.record.size(); }
SIM_EXPORT void sim_record_copy(void* out) {
    memcpy(out, sim_rt::C.record.data(), sim_rt::C.record.size() * sizeof(sim_rt::AccessEvent));
}
SIM_EXPORT unsigned long long sim_record_barriers() { return sim_rt::S->barriers; }

// The warnings of the last launch (launcher.py): how many, and the kind and text of each.
SIM_EXPORT int sim_warning_count() { return (int)sim_rt::launch_warnings.size(); }
SIM_EXPORT int sim_warning(int index, char* out, int out_size) {
    snprintf(out, (size_t)out_size, "%s", sim_rt::launch_warnings[index].text.c_str());
    return sim_rt::launch_warnings[index].kind;
}

// A checked build: read the static __shared__ arrays from this library's symbol table, at `path`.
SIM_EXPORT void sim_read_shared_arrays(const char* path) { sim_rt::read_shared_arrays(path); }

// A __constant__ or __device__ variable of this library (SimModule.get_global).
SIM_EXPORT void* sim_global_variable(const char* path, const char* name, unsigned long long* size, int* writable) {
    return sim_rt::global_variable(path, name, size, writable);
}

// Runs a whole launch. args[i] points at the value of scalar argument i; for an array argument it is
// ignored, and the argument is byte arg_offset[i] of host buffer arg_buffer[i]. Returns 0, or 1 with a
// message in `error`.
SIM_EXPORT int sim_launch(int kernel, void** args, const int* arg_buffer, const unsigned long long* arg_offset,
                          int arg_count, const sim_rt::HostBuffer* buffers, int buffer_count,
                          const unsigned int* grid, const unsigned int* block, unsigned int dynamic_shared_bytes,
                          unsigned long long seed, int checks, int threads, sim_rt::Report* report, char* error,
                          int error_size) {
    using namespace sim_rt;
    use_this_threads_scheduler();
    std::vector<unsigned char*> copies(buffer_count);
    for (int b = 0; b < buffer_count; ++b) copies[b] = make_guarded_copy(b, buffers[b]);
    std::vector<void*> pointers(arg_count);  // the device pointers handed to the kernel
    std::vector<void*> argv(args, args + arg_count);
    for (int i = 0; i < arg_count; ++i) {
        if (arg_buffer[i] < 0) continue;
        pointers[i] = copies[arg_buffer[i]] + arg_offset[i];
        argv[i] = &pointers[i];
    }

    L.thread_body = kernel_entry(kernel).thread_body;
    L.hosts = buffers, L.buffer_count = buffer_count;
    L.args = argv.data();
    L.seed = seed;
    L.grid_dim = dim3(grid[0], grid[1], grid[2]);
    L.block_dim = dim3(block[0], block[1], block[2]);
    L.threads_per_block = (int)(block[0] * block[1] * block[2]);
    L.dynamic_shared_bytes = dynamic_shared_bytes;
    // "strict" (launcher.py's bit 16) is no instrumentation: benign races and two barrier sites become errors.
    L.strict = C.strict = (checks & kCheckStrict) != 0;
    L.cooperative = (checks & kCooperativeLaunch) != 0;
    checks &= ~(kCheckStrict | kCooperativeLaunch);
    L.checks = checks;
    launch_warnings.clear();
    S->error.clear();
    S->report = Report{};
    S->barriers = 0;
    // The checks keep their state (the racecheck cells, initcheck's flags) for one block at a time.
    setup_checks(checks, buffers, copies.data(), buffer_count, dynamic_shared_bytes);
    C.launching = checks != 0;
    bool ok = run_blocks(checks || L.cooperative ? 1 : threads);
    C.launching = false;
    for (int b = 0; ok && b < buffer_count; ++b) ok = check_guards(b, buffers[b], copies[b]);
    for (int b = 0; ok && b < buffer_count; ++b) {
        copy_back(buffers[b], copies[b]);
        copy_back_written(checks, b, buffers[b]);
    }
    *report = S->report;
    fflush(stdout);  // so that printf output from the kernel appears before whatever Python prints next
    if (!ok) snprintf(error, (size_t)error_size, "%s", S->error.c_str());
    return ok ? 0 : 1;
}
