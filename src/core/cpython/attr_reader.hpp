// Reading one attribute of many objects: a census asks 100,000 tasks for
// `_state`, `_fut_waiter` and `_coro`, and their coroutines for `cr_await`.
// PyObject_GetAttr finds the descriptor on the type each time; for a getset
// descriptor (what C types such as _asyncio.Task use) this calls its getter
// directly, the lookup done once per type and again whenever the type
// changes (its version tag).
#pragma once
#include <Python.h>

namespace taskleak::cpython {

class AttrReader {
public:
    explicit AttrReader(const char *name) : name_(PyUnicode_InternFromString(name)) {}
    // A new reference to obj.<name>, or nullptr (no error left set).
    PyObject *get(PyObject *obj) {
        PyTypeObject *tp = Py_TYPE(obj);
        if (tp != type_ || tp->tp_version_tag != version_ || version_ == 0) learn(tp);
        PyObject *v = get_ != nullptr ? get_(obj, closure_) : PyObject_GetAttr(obj, name_);
        if (v == nullptr) PyErr_Clear();
        return v;
    }

private:
    void learn(PyTypeObject *tp);
    PyObject *name_;  // interned, kept
    PyTypeObject *type_ = nullptr;
    unsigned int version_ = 0;  // tp_version_tag when learnt; 0: not cached
    getter get_ = nullptr;      // nullptr: use PyObject_GetAttr
    void *closure_ = nullptr;
};

}  // namespace taskleak::cpython
