// Any CPython this build has no struct mirror for: walk with the public frame
// API. Correct but ~10x slower, since each step materialises a frame object.
// taskleak reports this as reduced mode ("public-api" frame walk).
#include "cpython/frames.hpp"
#include <frameobject.h>

namespace taskleak::cpython {

static int32_t frame_offset(PyFrameObject *f) {
    int lasti = PyFrame_GetLasti(f);
    return lasti < 0 ? 0 : lasti;
}

int capture_thread_stack(CodeLoc *out, int max_depth) {
    PyFrameObject *f = PyEval_GetFrame();  // borrowed
    Py_XINCREF(f);
    int n = 0;
    while (f != nullptr && n < max_depth) {
        PyCodeObject *co = PyFrame_GetCode(f);  // new ref; the stack table keeps its own
        out[n].code = co;
        out[n].offset = frame_offset(f);
        Py_DECREF(co);
        ++n;
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    return n;
}

static PyFrameObject *gen_frame(PyObject *gen) {
    const char *attr = PyCoro_CheckExact(gen) ? "cr_frame" : PyAsyncGen_CheckExact(gen) ? "ag_frame" : "gi_frame";
    PyObject *f = PyObject_GetAttrString(gen, attr);
    if (f == nullptr) {
        PyErr_Clear();
        return nullptr;
    }
    if (!PyFrame_Check(f)) {
        Py_DECREF(f);
        return nullptr;
    }
    return (PyFrameObject *)f;  // new reference
}

bool generator_location(PyObject *gen, CodeLoc *out) {
    PyFrameObject *f = gen_frame(gen);
    if (f == nullptr) return false;
    PyCodeObject *co = PyFrame_GetCode(f);
    out->code = co;
    out->offset = frame_offset(f);
    Py_DECREF(co);
    Py_DECREF(f);
    return true;
}

// The value stack has no public API: the caller asks the attributes.
bool generator_suspension(PyObject *, CodeLoc *, PyObject **) { return false; }

PyObject *generator_local(PyObject *, const char *) { return nullptr; }

int capture_thread_stack_memo(CodeLoc *out, int max_depth, StackMemo *memo, bool *same) {
    memo->valid = false;  // no raw frame layout here: always a full walk
    *same = false;
    return capture_thread_stack(out, max_depth);
}

const char *frame_walk_mode() { return "public-api"; }

}  // namespace taskleak::cpython
