// The interpreter-internals boundary for "how many asyncio tasks are alive":
// 3.14+ keeps every live C task (asyncio.Task and its subclasses) in an
// intrusive linked list, its thread's while that thread lives and the
// interpreter's after (Include/internal/pycore_tstate.h, pycore_llist.h).
// asyncio.all_tasks() copies those lists into a set: ~9 ms of a 20 ms census
// of 100,000 tasks. Counting the nodes costs a pointer read a task, and
// tells whether the tasks taskleak already holds are all of them.
//
// Where the lists live is published by CPython itself, for out-of-process
// tools, in the _asyncio module's ".AsyncioDebug" section
// (_Py_AsyncioModuleDebugOffsets); it is read from the loaded module's ELF
// file, checked against the running interpreter, and trusted only then.
// Before 3.14, or when anything does not check out, the lists are unknown
// and callers ask asyncio.
#pragma once
#include <Python.h>
#include <cstdint>

namespace taskleak::cpython {

// The type every listed task is an instance of (borrowed: _asyncio.Task), or
// nullptr when the lists cannot be read. The first call learns where they
// are; GIL held.
PyTypeObject *listed_task_type();

// Whether `task` (alive) is in one of the lists: an instance of
// listed_task_type() whose node is linked. asyncio.tasks._unregister_task
// unlinks a task that stays alive. GIL held.
bool is_listed(PyObject *task);

// The number of tasks in every list of the calling thread's interpreter, or
// -1 when the lists cannot be read (or one does not check out: a node with
// no successor, a list longer than any heap holds). GIL held; runs no Python
// code.
int64_t listed_task_count();

// "asyncio-debug-offsets" once the lists can be read, else "unavailable".
const char *task_lists_mode();

}  // namespace taskleak::cpython
