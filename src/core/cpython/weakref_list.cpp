#include "cpython/weakref_list.hpp"

namespace taskleak::cpython {

PyObject *find_weakref_with_callback(PyObject *obj, PyObject *callback) {
    Py_ssize_t off = Py_TYPE(obj)->tp_weaklistoffset;
    if (off > 0) {
        // The list head is a public struct field on 3.10-3.13 (asyncio.Task
        // has one); walking it is a few pointer reads.
        auto *wr = *(PyWeakReference **)((char *)obj + off);
        for (; wr != nullptr; wr = wr->wr_next)
            if (wr->wr_callback == callback) return (PyObject *)wr;
        return nullptr;
    }
    // Types with managed weakref storage: ask the weakref module (slow path,
    // only reached for exotic Task subclasses).
    static PyObject *getweakrefs = nullptr;
    if (getweakrefs == nullptr) {
        PyObject *mod = PyImport_ImportModule("weakref");
        if (mod == nullptr) { PyErr_Clear(); return nullptr; }
        getweakrefs = PyObject_GetAttrString(mod, "getweakrefs");
        Py_DECREF(mod);
        if (getweakrefs == nullptr) { PyErr_Clear(); return nullptr; }
    }
    PyObject *refs = PyObject_CallOneArg(getweakrefs, obj);
    if (refs == nullptr) { PyErr_Clear(); return nullptr; }
    PyObject *found = nullptr;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(refs); ++i) {
        auto *wr = (PyWeakReference *)PyList_GET_ITEM(refs, i);
        if (wr->wr_callback == callback) { found = (PyObject *)wr; break; }
    }
    Py_DECREF(refs);  // the weakref stays alive: it is owned by the table/set
    return found;
}

}  // namespace taskleak::cpython
