// CPython 3.10-3.13: asyncio registers its tasks in a WeakSet, which the
// census reads (or counts) directly; there are no per-thread lists.
#include "cpython/task_lists.hpp"

namespace taskleak::cpython {

PyTypeObject *listed_task_type() { return nullptr; }
const void *listed_before(PyObject *) { return nullptr; }
const void *list_node(PyObject *) { return nullptr; }
const void *coro_address(PyObject *) { return nullptr; }
bool lists_hold_only(const std::vector<const void *> &, const std::function<bool(PyObject *)> &) { return false; }
const char *task_lists_mode() { return "unavailable"; }

}  // namespace taskleak::cpython
