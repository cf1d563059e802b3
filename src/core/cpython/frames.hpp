// The interpreter-internals boundary for frames: everything that depends on
// how a given CPython lays out its frames lives behind these four functions,
// implemented once per version in frames_3XX.cpp (chosen by CMake).
#pragma once
#include <Python.h>
#include <cstdint>

namespace taskleak::cpython {

// One frame as we store it: the code object and the byte offset of the
// instruction being executed. Turning this into a line number is deferred to
// report time (PyCode_Addr2Line), as tracemalloc does.
struct CodeLoc {
    PyCodeObject *code;
    int32_t offset;
};

// Fills `out` with the calling thread's Python frames, innermost first, and
// returns how many were written (at most `max_depth`). Never allocates Python
// objects and never raises.
int capture_thread_stack(CodeLoc *out, int max_depth);

// What the last capture_thread_stack_memo saw, frame by frame, in the raw form
// of the interpreter's structs (code pointer, instruction pointer, owner).
// Equal raw frames give equal CodeLocs as long as the code objects of the
// memo's frames stay alive; the caller guarantees that by keeping the stack
// it interned from the memo's capture (whose entry holds those codes).
struct StackMemo {
    static constexpr int RAW_MAX = 160;
    bool valid = false;
    int depth = 0;               // max_depth of the capture
    int raw_n = 0;               // frames visited (skipped ones included)
    int n = 0;                   // frames written
    const void *frame[RAW_MAX];  // addresses: only ever prefetched, never read through
    const void *exec[RAW_MAX];
    const void *ip[RAW_MAX];
    int owner[RAW_MAX];
};

// capture_thread_stack, first checking whether the calling thread's stack is
// exactly the one `memo` saw: then returns memo->n with *same = true and
// leaves `out` alone (no hashing, no code object touched). Otherwise fills
// `out`, updates `memo` and sets *same = false. Builds without a raw frame
// layout (3.10, public API) never report *same.
int capture_thread_stack_memo(CodeLoc *out, int max_depth, StackMemo *memo, bool *same);

// The location of a coroutine, generator or async generator that is suspended
// or running. False if it has finished (or never had a frame).
bool generator_location(PyObject *gen, CodeLoc *out);

// A suspended generator, coroutine or async generator: where it is
// suspended, and the object on top of its value stack (borrowed; nullptr if
// the stack is empty). At an `await` or `yield from` that object is what it
// awaits, the answer cr_await gives; whether a suspension point is one is a
// property of its bytecode, left to the caller (see await_chain.cpp). False
// if it is not suspended (not started, running, finished) or this build
// does not read frames directly.
bool generator_suspension(PyObject *gen, CodeLoc *loc, PyObject **top);

// A borrowed reference to the local variable `name` of a suspended generator
// or coroutine frame, or nullptr. Never raises.
PyObject *generator_local(PyObject *gen, const char *name);

// "direct" when frames are read from the interpreter's structs, "public-api"
// when this build falls back to the public frame API (unknown CPython).
const char *frame_walk_mode();

}  // namespace taskleak::cpython
