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

}  // namespace taskleak
