// Reading memory that may be freed or unmapped at any moment, without ever
// faulting: the watchdog reads another thread's frames while that thread runs
// (and may free them). A read goes through the kernel, which reports a bad
// address as an error instead of delivering SIGSEGV.
#pragma once
#include <cstddef>
#include <cstdint>

namespace taskleak::cpython {

// Copies `n` bytes at `addr` into `out`; false if any byte could not be read
// (unmapped, or the mechanism is unavailable). Async-signal-safe, no GIL,
// allocates nothing.
bool safe_read(uintptr_t addr, void *out, size_t n);

template <class T>
inline bool safe_read_value(uintptr_t addr, T *out) {
    return safe_read(addr, out, sizeof(T));
}

// "process_vm_readv", "proc-self-mem" or "unavailable" (after the first probe).
const char *safe_read_mode();

}  // namespace taskleak::cpython
