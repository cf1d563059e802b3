// Fault-tolerant reads of our own memory. First choice: process_vm_readv on
// our own pid (one syscall, no file descriptor; the kernel always lets a
// process read itself). Where a seccomp profile forbids it, pread() on
// /proc/self/mem does the same through a file. Both return EFAULT/EIO for an
// unmapped address, which is all the caller needs to know.
#include "cpython/safe_read.hpp"

#include <atomic>
#include <cerrno>
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

namespace taskleak::cpython {
namespace {

enum Mode { UNKNOWN = 0, VM_READV = 1, PROC_MEM = 2, NONE = 3 };
std::atomic<int> g_mode{UNKNOWN};
std::atomic<int> g_mem_fd{-1};

bool read_vm(uintptr_t addr, void *out, size_t n) {
    struct iovec local = {out, n};
    struct iovec remote = {(void *)addr, n};
    ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    return got == (ssize_t)n;
}

bool read_proc(uintptr_t addr, void *out, size_t n) {
    int fd = g_mem_fd.load(std::memory_order_acquire);
    if (fd < 0) return false;
    // Addresses above 2^63 do not fit off_t; no user-space pointer is there.
    if (addr > (uintptr_t)INT64_MAX) return false;
    ssize_t got = pread(fd, out, n, (off_t)addr);
    return got == (ssize_t)n;
}

int probe() {
    static const uint64_t canary = 0x7461736b6c65616bULL;  // "taskleak"
    uint64_t v = 0;
    if (read_vm((uintptr_t)&canary, &v, sizeof v) && v == canary) return VM_READV;
    int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        int expected = -1;
        if (!g_mem_fd.compare_exchange_strong(expected, fd)) close(fd);
        v = 0;
        if (read_proc((uintptr_t)&canary, &v, sizeof v) && v == canary) return PROC_MEM;
    }
    return NONE;
}

int mode() {
    int m = g_mode.load(std::memory_order_acquire);
    if (m == UNKNOWN) {
        m = probe();
        g_mode.store(m, std::memory_order_release);
    }
    return m;
}

}  // namespace

bool safe_read(uintptr_t addr, void *out, size_t n) {
    if (n == 0) return true;
    if (addr < 4096) return false;  // null and near-null: never mapped
    switch (mode()) {
        case VM_READV:
            return read_vm(addr, out, n);
        case PROC_MEM:
            return read_proc(addr, out, n);
        default:
            return false;
    }
}

const char *safe_read_mode() {
    switch (mode()) {
        case VM_READV:
            return "process_vm_readv";
        case PROC_MEM:
            return "proc-self-mem";
        default:
            return "unavailable";
    }
}

}  // namespace taskleak::cpython
