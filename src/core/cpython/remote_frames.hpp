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

namespace taskleak::cpython {

// One sampled frame. The code object may die after the sample: `filename`
// and `firstlineno` fingerprint it so that, later and with the GIL, a freed
// or reused address is recognised instead of dereferenced.
struct RemoteFrame {
    uintptr_t code;
    uintptr_t filename;
    int32_t firstlineno;
    int32_t offset;  // byte offset of the instruction, as PyCode_Addr2Line wants
};

struct RemoteOffsets {
    const char *source;        // "debug-offsets" or "compiled"
    int64_t ts_frame;          // PyThreadState -> current frame (or _PyCFrame*)
    int64_t cframe_current;    // _PyCFrame -> current_frame; -1 when ts_frame is direct
    int64_t f_previous;
    int64_t f_code;            // code object (a tagged _PyStackRef on 3.14+)
    int64_t f_instr;           // instruction pointer, or f_lasti (3.10)
    int64_t f_owner;           // -1: no owner byte (3.10)
    int owner_skip_min;        // frames with owner >= this are C-stack/interpreter shims; 0: none
    bool code_tagged;          // mask _PyStackRef tag bits off f_code
    bool lasti_index;          // 3.10: f_instr is an int index in code units
    int64_t co_filename;
    int64_t co_firstlineno;
    int64_t co_adaptive;       // start of the bytecode inside the code object (3.11+)
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

// With the GIL: the code object of a sampled frame if it is still that code
// object (type, plausible refcount, same fingerprint), else nullptr. Borrowed.
PyCodeObject *revalidate_code(const RemoteFrame &f);

}  // namespace taskleak::cpython
