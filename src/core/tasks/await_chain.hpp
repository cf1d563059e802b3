// Await chains: from a task's coroutine down through cr_await / gi_yieldfrom /
// ag_await to the innermost suspended frame, as (code, offset) pairs. This is
// the "where is it suspended" answer that Task.get_stack() (one frame) lacks.
#pragma once
#include "cpython/frames.hpp"

namespace taskleak {

// Writes up to `max` frames, outermost first, and returns the count. *leaf
// receives a new reference to what the innermost frame awaits (a FutureIter,
// a foreign awaitable...) or nullptr. Never raises.
int walk_await_chain(PyObject *coro, cpython::CodeLoc *out, int max, PyObject **leaf);

// The same walk one link at a time, so that a census can advance many chains
// in turn and prefetch each chain's next object while it reads the others'.
struct ChainWalk {
    PyObject *obj = nullptr;   // strong: the next object to read, nullptr once finished
    PyObject *leaf = nullptr;  // strong or nullptr, as walk_await_chain's *leaf
    cpython::CodeLoc *out = nullptr;
    int n = 0;
    int max = 0;
    // Starts at `coro` (borrowed; nullptr gives an empty walk).
    void begin(PyObject *coro, cpython::CodeLoc *buf, int max_frames);
    // Follows one link; false once the walk is finished (obj is then nullptr).
    bool step();
};

}  // namespace taskleak
