// Finding our own weak reference among an object's weak references.
#pragma once
#include <Python.h>

namespace taskleak::cpython {

// A borrowed reference to the first weakref to `obj` whose callback is
// `callback`, or nullptr. Never raises.
PyObject *find_weakref_with_callback(PyObject *obj, PyObject *callback);

}  // namespace taskleak::cpython
