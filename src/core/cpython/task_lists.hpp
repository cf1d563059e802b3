// The interpreter-internals boundary for "how many asyncio tasks are alive":
// 3.14+ keeps every live C task (asyncio.Task and its subclasses) in an
// intrusive linked list, its thread's while that thread lives and the
// interpreter's after (Include/internal/pycore_tstate.h, pycore_llist.h).
// asyncio.all_tasks() copies those lists into a set: ~9 ms of a 20 ms census
// of 100,000 tasks. Whether the tasks taskleak already holds are all of
// them is told by the links of those very tasks, read as each is (see
// lists_hold_only): a compare a task, where counting the nodes would chase
// a pointer a task (~1.5 ms of 100,000).
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
#include <functional>
#include <vector>

namespace taskleak::cpython {

// The type every listed task is an instance of (borrowed: _asyncio.Task), or
// nullptr when the lists cannot be read. The first call learns where they
// are; GIL held.
PyTypeObject *listed_task_type();

// The node before `task`'s in its list (an opaque address: another listed
// task's node, or a list's head), or nullptr when `task` (alive) is not
// listed: not an instance of listed_task_type(), or its node unlinked
// (asyncio.tasks._unregister_task unlinks a task that stays alive). GIL held.
const void *listed_before(PyObject *task);

// The node of `task`, an instance of listed_task_type(): what listed_before
// answers for the task listed after it.
const void *list_node(PyObject *task);
// The address of the coroutine of `task` (alive, GIL held), read from the
// field the debug offsets name, to be prefetched, never read through; nullptr
// unless `task` is exactly listed_task_type() (a subclass may differ).
const void *coro_address(PyObject *task);

// Whether the lists hold no task but those `held` accepts, knowing that every
// listed task `held` accepts is preceded by another such task or by a head,
// except for the nodes in `unchecked` (from listed_before). Following the
// links back from every head then meets only held tasks and heads, and each
// list leads back to its head. False when the lists cannot be read or one
// does not check out. GIL held; runs no Python code.
bool lists_hold_only(const std::vector<const void *> &unchecked, const std::function<bool(PyObject *)> &held);

// "asyncio-debug-offsets" once the lists can be read, else "unavailable".
const char *task_lists_mode();

}  // namespace taskleak::cpython
