// CPython 3.14+: the running loop and task are two adjacent PyObject* fields
// of _PyThreadStateImpl (asyncio_running_loop, then asyncio_running_task; see
// the _Py_AsyncioModuleDebugOffsets that remote debuggers read). Their offset
// is found by scanning the calling thread's state for the pair (loop, task)
// of a probe, within the size of _PyThreadStateImpl, and confirmed by a
// second probe. Every later read is at that offset inside a thread state,
// which is an allocation of that same size, so reads stay in bounds.
#include "cpython/running_task.hpp"
#include <cstddef>
#include <cstdint>

#if PY_VERSION_HEX < 0x030E0000
#error "running_task_314plus.cpp is for CPython 3.14 and later"
#endif
#if defined(Py_GIL_DISABLED) || defined(Py_DEBUG)
#error "running_task_314plus.cpp assumes a GIL-enabled release build"
#endif

namespace taskleak::cpython {
namespace {

// sizeof(_PyThreadStateImpl) (the bound of the scan), from each version's
// _AsyncioDebug section: 3.14 0x3a8, 3.15 (alpha) 0x450. The scan starts
// after the public PyThreadState, which _PyThreadStateImpl begins with.
constexpr size_t impl_size() { return PY_VERSION_HEX < 0x030F0000 ? 0x3a8 : 0x450; }

Py_ssize_t learned = -1;           // offset of asyncio_running_loop, -1 = none
PyObject *learned_from = nullptr;  // the task of the first probe (address only)
bool confirmed = false;

Py_ssize_t scan(PyThreadState *ts, PyObject *loop, PyObject *task) {
    auto *base = (char *)ts;
    Py_ssize_t found = -1;
    for (size_t off = sizeof(PyThreadState); off + 2 * sizeof(void *) <= impl_size(); off += sizeof(void *)) {
        PyObject *a = *(PyObject **)(base + off);
        PyObject *b = *(PyObject **)(base + off + sizeof(void *));
        if (a == loop && b == task) {
            if (found >= 0) return -2;  // ambiguous: trust nothing
            found = (Py_ssize_t)off;
        }
    }
    return found;
}

}  // namespace

bool running_task_calibrate(PyObject *loop, PyObject *task) {
    if (confirmed) return true;
    if (loop == nullptr || task == nullptr || loop == task) return false;
    // Not found (a task of a loop running in another thread) or ambiguous:
    // this probe says nothing.
    Py_ssize_t off = scan(PyThreadState_Get(), loop, task);
    if (off < 0) return false;
    if (learned < 0) {
        learned = off;
        learned_from = task;
    } else if (task == learned_from) {
        return false;  // the same task again proves nothing new
    } else if (learned == off) {
        confirmed = true;
    } else {
        running_task_reset();
    }
    return confirmed;
}

void running_task_reset() {
    learned = -1;
    learned_from = nullptr;
    confirmed = false;
}

PyObject *running_task_peek(PyObject *loop, bool *known) {
    *known = false;
    if (!confirmed) return nullptr;
    auto *base = (char *)PyThreadState_GET();
    if (*(PyObject **)(base + learned) != loop) return nullptr;
    *known = true;
    return *(PyObject **)(base + learned + sizeof(void *));
}

const char *running_task_mode() { return confirmed ? "thread-state" : "call"; }

}  // namespace taskleak::cpython
