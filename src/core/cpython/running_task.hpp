// The interpreter-internals boundary for "which task is running on this
// thread": 3.14+ keeps it in the thread state (_PyThreadStateImpl fields
// asyncio_running_loop / asyncio_running_task), where _asyncio.current_task()
// reads it behind a function call. Reading the two words directly saves that
// call on every task creation. Their offsets are not in any public header, so
// they are learned at install time from probe tasks (calibrate) and trusted
// only when two different probes agree; otherwise, and on 3.10-3.13 (which
// use asyncio's loop -> task dict), peek() always says "unknown".
#pragma once
#include <Python.h>

namespace taskleak::cpython {

// Call while `task` is the running task of `loop` on the calling thread.
// The first call learns where the thread state keeps them; a second call
// (another loop and task) must find the same place, which confirms it.
// Returns whether the offsets are now confirmed.
bool running_task_calibrate(PyObject *loop, PyObject *task);

// Forget what calibrate learned (peek says unknown from then on).
void running_task_reset();

// The task running on `loop` in the calling thread (borrowed; nullptr when
// none), with *known = true, when the thread state can answer that: the
// offsets are confirmed and this thread's running loop is `loop`. Otherwise
// *known = false and the caller asks asyncio.
PyObject *running_task_peek(PyObject *loop, bool *known);

// "thread-state" once confirmed, else "call".
const char *running_task_mode();

}  // namespace taskleak::cpython
