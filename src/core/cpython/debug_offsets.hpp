// CPython 3.13+ publishes where its fields live: _PyRuntime starts with a
// _Py_DebugOffsets struct (cookie "xdebugpy"), what out-of-process profilers
// and `python -m asyncio ps` read. remote_frames_313/314/315.cpp mirror the
// prefix of that struct they need (it grew between versions) and take the
// frame and code offsets from it rather than from our own mirrors.
#pragma once
#include "cpython/code_offsets.hpp"
#include <cstddef>
#include <cstring>
#include <dlfcn.h>

namespace taskleak::cpython {

// The runtime's _Py_DebugOffsets as the mirror `Mirror`, or nullptr when the
// symbol is not visible, the cookie is wrong, or it describes another
// version or a free-threaded build.
template <class Mirror>
const Mirror *published_debug_offsets() {
    void *sym = dlsym(RTLD_DEFAULT, "_PyRuntime");
    if (sym == nullptr) return nullptr;
    auto *d = (const Mirror *)sym;
    if (std::memcmp(d->cookie, "xdebugpy", 8) != 0) return nullptr;
    if ((d->version >> 16) != ((uint64_t)PY_VERSION_HEX >> 16)) return nullptr;
    if (d->free_threaded != 0) return nullptr;
    return d;
}

// Fills the version-independent part from any mirror with the usual names.
template <class Mirror>
void offsets_from_debug(const Mirror *d, RemoteOffsets &o) {
    o.source = "debug-offsets";
    o.ts_frame = (int64_t)d->thread_state.current_frame;
    o.cframe_current = -1;
    o.f_previous = (int64_t)d->interpreter_frame.previous;
    o.f_code = (int64_t)d->interpreter_frame.executable;
    o.f_instr = (int64_t)d->interpreter_frame.instr_ptr;
    o.f_owner = (int64_t)d->interpreter_frame.owner;
    o.co_filename = (int64_t)d->code_object.filename;
    o.co_firstlineno = (int64_t)d->code_object.firstlineno;
    o.co_adaptive = (int64_t)d->code_object.co_code_adaptive;
    o.co_qualname = (int64_t)d->code_object.qualname;
    o.co_linetable = (int64_t)d->code_object.linetable;
}

// The frame layout compiled into this build, used when the published offsets
// cannot be read (the symbol is hidden, or the cookie or version is off).
struct CompiledFrameLayout {
    int64_t f_previous, f_code, f_instr, f_owner;
    bool code_tagged;  // f_executable is a tagged _PyStackRef (3.14+)
};

// 3.13+: the compiled layout, overridden by the interpreter's published
// offsets when they check out. Owners >= 3 (C stack, interpreter) are shim
// frames on every version that publishes offsets.
template <class Mirror>
RemoteOffsets published_or_compiled(const CompiledFrameLayout &compiled) {
    RemoteOffsets o{};
    o.source = "compiled";
    o.ts_frame = offsetof(PyThreadState, current_frame);
    o.cframe_current = -1;
    o.f_previous = compiled.f_previous;
    o.f_code = compiled.f_code;
    o.f_instr = compiled.f_instr;
    o.f_owner = compiled.f_owner;
    code_offsets_from_headers(o);
    if (const auto *d = published_debug_offsets<Mirror>()) offsets_from_debug(d, o);
    o.owner_skip_min = 3;
    o.code_tagged = compiled.code_tagged;
    o.lasti_index = false;
    return o;
}

}  // namespace taskleak::cpython
