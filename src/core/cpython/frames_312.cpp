// CPython 3.12: mirror of _PyInterpreterFrame (Include/internal/pycore_frame.h).
// New since 3.11: shim frames owned by the C stack, field order changed.
#include "cpython/interpreter_frames.hpp"

namespace taskleak::cpython {
namespace {
struct Frame312 {
    PyCodeObject *f_code;
    Frame312 *previous;
    PyObject *f_funcobj;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyObject *frame_obj;
    _Py_CODEUNIT *prev_instr;
    int stacktop;
    uint16_t return_offset;
    char owner;
    PyObject *localsplus[1];
};
constexpr char OWNED_BY_GENERATOR = 1;
constexpr char OWNED_BY_CSTACK = 3;

struct Layout312 {
    using Frame = Frame312;
    static Frame *current(PyThreadState *ts) { return ts->cframe ? (Frame *)ts->cframe->current_frame : nullptr; }
    static Frame *previous(Frame *f) { return f->previous; }
    static PyCodeObject *code(Frame *f) { return f->f_code; }
    static bool skip(Frame *f) {
        if (f->owner == OWNED_BY_CSTACK) return true;
        return f->owner != OWNED_BY_GENERATOR &&
               f->prev_instr < (_Py_CODEUNIT *)f->f_code->co_code_adaptive + f->f_code->_co_firsttraceable;
    }
    static int32_t offset_bytes(Frame *f) {
        auto d = f->prev_instr - (_Py_CODEUNIT *)f->f_code->co_code_adaptive;
        return d < 0 ? 0 : (int32_t)(d * sizeof(_Py_CODEUNIT));
    }
    static PyObject **localsplus(Frame *f) { return f->localsplus; }
    // FRAME_SUSPENDED is -1 (Include/internal/pycore_frame.h).
    static bool generator_suspended(PyObject *gen) { return ((PyGenObject *)gen)->gi_frame_state == -1; }
};
}  // namespace
}  // namespace taskleak::cpython

TASKLEAK_DEFINE_FRAME_API(Layout312)
