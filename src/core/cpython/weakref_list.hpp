// Finding our own weak reference among an object's weak references.
#pragma once
#include <Python.h>

namespace taskleak::cpython {

// A borrowed reference to the first weakref to `obj` whose callback is
// `callback`, or nullptr. Never raises.
PyObject *find_weakref_with_callback(PyObject *obj, PyObject *callback);

// The same for either of two callbacks, in one walk (a new task's list is
// usually empty: one read).
PyObject *find_weakref_with_callbacks(PyObject *obj, PyObject *cb1, PyObject *cb2);

// The referent of weakref `ref` as a borrowed pointer, nullptr once dead.
// PyWeakref_GetObject is gone in 3.15; this is valid for identity tests and
// for taking a new reference right away (no Python code may run in between).
PyObject *weakref_peek(PyObject *ref);

// Whether weakref `ref` was made with `callback` (a field read; the layout of
// PyWeakReference's first fields is the same on 3.10-3.15).
inline bool weakref_has_callback(PyObject *ref, PyObject *callback) {
    return PyWeakref_Check(ref) && ((PyWeakReference *)ref)->wr_callback == callback;
}

}  // namespace taskleak::cpython
