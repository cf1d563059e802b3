// Reading another thread's Python stack without the GIL, while that thread
// runs. Nothing read is trusted: every pointer goes through safe_read(), every
// code object is type-checked, and the walk is bounded. A torn read (the
// thread moved on mid-walk) gives a short or odd sample, never a crash.
//
// The version-specific part is only *where* fields live (RemoteOffsets),
// provided by remote_frames_3XX.cpp: from the interpreter's own published
// _Py_DebugOffsets on 3.13+, from the public/mirrored structs before.
#pragma once
#include <Python.h>
#include <cstdint>
#include <string>

namespace taskleak::cpython {

// One sampled frame. The code object may die right after the sample, so it
// is never dereferenced later: what a report needs is copied (CodeInfo)
// while it is still on the stack. `filename` and `firstlineno` fingerprint
// the code object (an address reused by another one is told apart).
struct RemoteFrame {
    uintptr_t code;
    uintptr_t filename;
    int32_t firstlineno;
    int32_t offset;  // byte offset of the instruction, as PyCode_Addr2Line wants
};

struct RemoteOffsets {
    const char *source;      // "debug-offsets" or "compiled"
    int64_t ts_frame;        // PyThreadState -> current frame (or _PyCFrame*)
    int64_t cframe_current;  // _PyCFrame -> current_frame; -1 when ts_frame is direct
    int64_t f_previous;
    int64_t f_code;      // code object (a tagged _PyStackRef on 3.14+)
    int64_t f_instr;     // instruction pointer, or f_lasti (3.10)
    int64_t f_owner;     // -1: no owner byte (3.10)
    int owner_skip_min;  // frames with owner >= this are C-stack/interpreter shims; 0: none
    bool code_tagged;    // mask _PyStackRef tag bits off f_code
    bool lasti_index;    // 3.10: f_instr is an int index in code units
    int64_t co_filename;
    int64_t co_firstlineno;
    int64_t co_adaptive;   // start of the bytecode inside the code object (3.11+)
    int64_t co_qualname;   // co_qualname (3.11+), co_name (3.10)
    int64_t co_linetable;  // bytes
    int64_t co_flags;      // int
    int linetable_format;  // LINETABLE_310 or LINETABLE_LOCATIONS
};

constexpr int LINETABLE_310 = 0;        // (byte delta, line delta) pairs, PEP 626
constexpr int LINETABLE_LOCATIONS = 1;  // 3.11+ location table (Objects/locations.md)

// What a report needs from a code object, copied without the GIL.
struct CodeInfo {
    uintptr_t code = 0;
    uintptr_t filename_ptr = 0;
    int32_t firstlineno = 0;
    int32_t flags = 0;
    std::string filename;   // UTF-8
    std::string qualname;   // UTF-8
    std::string linetable;  // raw bytes; empty if unreadable or too large
    int format = LINETABLE_LOCATIONS;
};

// This interpreter's offsets (remote_frames_3XX.cpp). Called once, with the GIL.
RemoteOffsets remote_offsets();

// Prepare (with the GIL, once): resolve offsets and probe safe_read. False if
// stacks cannot be read on this system; durations are still measured then.
bool remote_frames_init();

// "debug-offsets via process_vm_readv", ..., or "unavailable".
const char *remote_frames_mode();

// Up to `max_depth` frames of the thread whose PyThreadState is at `tstate`,
// innermost first. No GIL, no allocation, never faults; 0 when nothing could
// be read.
int read_remote_stack(uintptr_t tstate, RemoteFrame *out, int max_depth);

// Copies filename, qualified name, flags and line table of the code object of
// `f` (no GIL, never faults). False if it is not (or no longer) readable as
// the code object the frame fingerprinted.
bool read_code_info(const RemoteFrame &f, CodeInfo *out);

// The line of the instruction at byte `offset` (as PyCode_Addr2Line), from
// the copied line table; -1 when there is none.
int code_info_line(const CodeInfo &info, int32_t offset);

}  // namespace taskleak::cpython
