// CPython 3.11: mirror of _PyInterpreterFrame (Include/internal/pycore_frame.h).
// The current frame hangs off tstate->cframe; prev_instr points at the code
// unit before the next instruction.
#include "cpython/interpreter_frames.hpp"

namespace taskleak::cpython {
namespace {
struct Frame311 {
    PyObject *f_func;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyCodeObject *f_code;
    PyObject *frame_obj;
    Frame311 *previous;
    _Py_CODEUNIT *prev_instr;
    int stacktop;
    bool is_entry;
    char owner;
    PyObject *localsplus[1];
};
constexpr char OWNED_BY_GENERATOR = 1;

struct Layout311 {
    using Frame = Frame311;
    static Frame *current(PyThreadState *ts) { return ts->cframe ? (Frame *)ts->cframe->current_frame : nullptr; }
    static Frame *previous(Frame *f) { return f->previous; }
    static PyCodeObject *code(Frame *f) { return f->f_code; }
    static bool skip(Frame *f) {
        // A frame that has not run its first traceable instruction yet.
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

TASKLEAK_DEFINE_FRAME_API(Layout311)
