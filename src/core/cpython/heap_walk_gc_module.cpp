// The version-neutral heap walk, used by heap_walk_gc_lists.cpp (3.10/3.11)
// when its checks of the collector's private state fail. gc.get_objects():
// one list allocation (8 bytes per object, ~20 ms per million objects) which
// also keeps every object alive for the duration of the walk. It never runs
// a collection itself (allocating the list may trigger the automatic one,
// exactly like any other allocation would).
#include "cpython/heap_walk.hpp"

namespace taskleak::cpython {

bool visit_gc_objects_via_list(ObjectVisitor visit, void *arg) {
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == nullptr) return false;
    PyObject *objects = PyObject_CallMethod(gc, "get_objects", nullptr);
    Py_DECREF(gc);
    if (objects == nullptr) return false;
    if (!PyList_Check(objects)) {
        Py_DECREF(objects);
        PyErr_SetString(PyExc_TypeError, "gc.get_objects() did not return a list");
        return false;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objects); ++i)
        if (!visit(PyList_GET_ITEM(objects, i), arg)) break;
    Py_DECREF(objects);
    return true;
}

}  // namespace taskleak::cpython
