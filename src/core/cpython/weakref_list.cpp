#include "cpython/weakref_list.hpp"

namespace taskleak::cpython {

PyObject *find_weakref_with_callbacks(PyObject *obj, PyObject *cb1, PyObject *cb2) {
    Py_ssize_t off = Py_TYPE(obj)->tp_weaklistoffset;
    // 3.12-3.15 "managed" weakrefs (asyncio.Task from 3.13 on) use a negative
    // offset into the pre-header, applied the same way (checked in each
    // version's _PyObject_GET_WEAKREFS_LISTPTR); later versions are not
    // assumed to keep that layout.
    bool direct = off > 0 || (off < 0 && PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x03100000);
    if (direct) {
        // Walking the list is a few pointer reads; weakref.getweakrefs()
        // would allocate a list (~40 ns), twice per task creation.
        auto *wr = *(PyWeakReference **)((char *)obj + off);
        for (; wr != nullptr; wr = wr->wr_next)
            if (wr->wr_callback != nullptr && (wr->wr_callback == cb1 || wr->wr_callback == cb2)) return (PyObject *)wr;
        return nullptr;
    }
    // Types with managed weakref storage: ask the weakref module (slow path,
    // only reached for exotic Task subclasses).
    static PyObject *getweakrefs = nullptr;
    if (getweakrefs == nullptr) {
        PyObject *mod = PyImport_ImportModule("weakref");
        if (mod == nullptr) {
            PyErr_Clear();
            return nullptr;
        }
        getweakrefs = PyObject_GetAttrString(mod, "getweakrefs");
        Py_DECREF(mod);
        if (getweakrefs == nullptr) {
            PyErr_Clear();
            return nullptr;
        }
    }
    PyObject *refs = PyObject_CallOneArg(getweakrefs, obj);
    if (refs == nullptr) {
        PyErr_Clear();
        return nullptr;
    }
    PyObject *found = nullptr;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(refs); ++i) {
        auto *wr = (PyWeakReference *)PyList_GET_ITEM(refs, i);
        if (wr->wr_callback != nullptr && (wr->wr_callback == cb1 || wr->wr_callback == cb2)) {
            found = (PyObject *)wr;
            break;
        }
    }
    Py_DECREF(refs);  // the weakref stays alive: it is owned by the table/set
    return found;
}

PyObject *find_weakref_with_callback(PyObject *obj, PyObject *callback) {
    return find_weakref_with_callbacks(obj, callback, callback);
}

PyObject *weakref_peek(PyObject *ref) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj = nullptr;
    if (PyWeakref_GetRef(ref, &obj) <= 0) {
        PyErr_Clear();
        return nullptr;
    }
    Py_DECREF(obj);  // still alive: it had a strong reference before ours
    return obj;
#else
    PyObject *obj = PyWeakref_GetObject(ref);
    return (obj == nullptr || obj == Py_None) ? nullptr : obj;
#endif
}

}  // namespace taskleak::cpython
