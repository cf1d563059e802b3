// CPython 3.10-3.13: asyncio keeps the running task in a loop -> task dict
// that the core reads directly; there is nothing to calibrate.
#include "cpython/running_task.hpp"

namespace taskleak::cpython {

bool running_task_calibrate(PyObject *, PyObject *) { return false; }
void running_task_reset() {}
PyObject *running_task_peek(PyObject *, bool *known) {
    *known = false;
    return nullptr;
}
const char *running_task_mode() { return "call"; }

}  // namespace taskleak::cpython
