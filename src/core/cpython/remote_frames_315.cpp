// CPython 3.15: offsets from the published _Py_DebugOffsets (mirrored prefix
// below, Include/internal/pycore_debug_offsets.h); the compiled fallback is
// the layout in stackref_frames.hpp. f_executable is a tagged _PyStackRef;
// owner 3 (interpreter) marks the thread's base frame.
// New since 3.14 in the prefix: thread_state grew (base_frame...) and err_stackitem.
#include "cpython/debug_offsets.hpp"

namespace taskleak::cpython {
namespace {
struct DebugOffsets315 {
    char cookie[8];
    uint64_t version;
    uint64_t free_threaded;
    struct {
        uint64_t size, finalizing, interpreters_head;
    } runtime_state;
    struct {
        uint64_t size, id, next, threads_head, threads_main, gc, imports_modules, sysdict, builtins, ceval_gil,
            gil_runtime_state, gil_runtime_state_enabled, gil_runtime_state_locked, gil_runtime_state_holder,
            code_object_generation, tlbc_generation;
    } interpreter_state;
    struct {
        uint64_t size, prev, next, interp, current_frame, base_frame, last_profiled_frame, last_profiled_frame_seq,
            thread_id, native_thread_id, datastack_chunk, status, holds_gil, gil_requested, current_exception,
            exc_state;
    } thread_state;
    struct {
        uint64_t exc_value;
    } err_stackitem;
    struct {
        uint64_t size, previous, executable, instr_ptr, localsplus, owner, stackpointer, tlbc_index;
    } interpreter_frame;
    struct {
        uint64_t size, filename, name, qualname, linetable, firstlineno, argcount, localsplusnames, localspluskinds,
            co_code_adaptive, co_tlbc;
    } code_object;
};
}  // namespace

RemoteOffsets remote_offsets() {
    return published_or_compiled<DebugOffsets315>(
        {/*f_previous*/ 8, /*f_code*/ 0, /*f_instr*/ 56, /*f_owner*/ 74, /*code_tagged*/ true});
}
}  // namespace taskleak::cpython
