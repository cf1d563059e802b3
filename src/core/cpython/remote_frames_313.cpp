// CPython 3.13: offsets from the published _Py_DebugOffsets (mirrored prefix
// below, Include/internal/pycore_runtime.h); the compiled fallback uses the
// public PyThreadState and the mirror in frames_313.cpp. f_executable is a
// plain PyObject*; owner 3 (C stack) marks shim frames.
#include "cpython/debug_offsets.hpp"
#include <cstddef>

namespace taskleak::cpython {
namespace {
struct DebugOffsets313 {
    char cookie[8];
    uint64_t version;
    uint64_t free_threaded;
    struct { uint64_t size, finalizing, interpreters_head; } runtime_state;
    struct {
        uint64_t size, id, next, threads_head, gc, imports_modules, sysdict, builtins, ceval_gil,
            gil_runtime_state, gil_runtime_state_enabled, gil_runtime_state_locked, gil_runtime_state_holder;
    } interpreter_state;
    struct {
        uint64_t size, prev, next, interp, current_frame, thread_id, native_thread_id, datastack_chunk, status;
    } thread_state;
    struct { uint64_t size, previous, executable, instr_ptr, localsplus, owner; } interpreter_frame;
    struct {
        uint64_t size, filename, name, qualname, linetable, firstlineno, argcount, localsplusnames,
            localspluskinds, co_code_adaptive;
    } code_object;
};
}  // namespace

RemoteOffsets remote_offsets() {
    RemoteOffsets o{};
    o.source = "compiled";
    o.ts_frame = offsetof(PyThreadState, current_frame);
    o.cframe_current = -1;
    o.f_code = 0;
    o.f_previous = sizeof(void *);
    o.f_instr = 7 * sizeof(void *);
    o.f_owner = 8 * sizeof(void *) + sizeof(int) + sizeof(uint16_t);
    o.co_filename = offsetof(PyCodeObject, co_filename);
    o.co_firstlineno = offsetof(PyCodeObject, co_firstlineno);
    o.co_adaptive = offsetof(PyCodeObject, co_code_adaptive);
    o.co_qualname = offsetof(PyCodeObject, co_qualname);
    o.co_linetable = offsetof(PyCodeObject, co_linetable);
    o.co_flags = offsetof(PyCodeObject, co_flags);
    o.linetable_format = LINETABLE_LOCATIONS;
    if (const auto *d = published_debug_offsets<DebugOffsets313>()) offsets_from_debug(d, o);
    o.owner_skip_min = 3;
    o.code_tagged = false;
    o.lasti_index = false;
    return o;
}
}  // namespace taskleak::cpython
