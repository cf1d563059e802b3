// CPython 3.13: offsets from the published _Py_DebugOffsets (mirrored prefix
// below, Include/internal/pycore_runtime.h); the compiled fallback uses the
// public PyThreadState and the mirror in frames_313.cpp. f_executable is a
// plain PyObject*; owner 3 (C stack) marks shim frames.
#include "cpython/debug_offsets.hpp"

namespace taskleak::cpython {
namespace {
struct DebugOffsets313 {
    char cookie[8];
    uint64_t version;
    uint64_t free_threaded;
    struct {
        uint64_t size, finalizing, interpreters_head;
    } runtime_state;
    struct {
        uint64_t size, id, next, threads_head, gc, imports_modules, sysdict, builtins, ceval_gil, gil_runtime_state,
            gil_runtime_state_enabled, gil_runtime_state_locked, gil_runtime_state_holder;
    } interpreter_state;
    struct {
        uint64_t size, prev, next, interp, current_frame, thread_id, native_thread_id, datastack_chunk, status;
    } thread_state;
    struct {
        uint64_t size, previous, executable, instr_ptr, localsplus, owner;
    } interpreter_frame;
    struct {
        uint64_t size, filename, name, qualname, linetable, firstlineno, argcount, localsplusnames, localspluskinds,
            co_code_adaptive;
    } code_object;
};
}  // namespace

RemoteOffsets remote_offsets() {
    return published_or_compiled<DebugOffsets313>(
        {/*f_previous*/ sizeof(void *), /*f_code*/ 0, /*f_instr*/ 7 * sizeof(void *),
         /*f_owner*/ 8 * sizeof(void *) + sizeof(int) + sizeof(uint16_t), /*code_tagged*/ false});
}
}  // namespace taskleak::cpython
