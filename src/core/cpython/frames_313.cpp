// CPython 3.13: mirror of _PyInterpreterFrame (Include/internal/pycore_frame.h).
// The current frame moved to tstate->current_frame, f_code became
// f_executable (may be None for shims) and prev_instr became instr_ptr.
#include "cpython/interpreter_frames.hpp"

namespace taskleak::cpython {
namespace {
struct Frame313 {
    PyObject *f_executable;
    Frame313 *previous;
    PyObject *f_funcobj;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyObject *frame_obj;
    uint16_t *instr_ptr;  // _Py_CODEUNIT is internal-only on 3.13; it is 2 bytes
    int stacktop;
    uint16_t return_offset;
    char owner;
    PyObject *localsplus[1];
};
constexpr char OWNED_BY_GENERATOR = 1;
constexpr char OWNED_BY_CSTACK = 3;

struct Layout313 {
    using Frame = Frame313;
    static Frame *current(PyThreadState *ts) { return (Frame *)ts->current_frame; }
    static Frame *previous(Frame *f) { return f->previous; }
    static PyCodeObject *code(Frame *f) {
        return (f->f_executable && PyCode_Check(f->f_executable)) ? (PyCodeObject *)f->f_executable : nullptr;
    }
    static bool skip(Frame *f) {
        if (f->owner == OWNED_BY_CSTACK) return true;
        PyCodeObject *co = code(f);
        if (co == nullptr) return true;
        return f->owner != OWNED_BY_GENERATOR &&
               f->instr_ptr < (uint16_t *)co->co_code_adaptive + co->_co_firsttraceable;
    }
    static int32_t offset_bytes(Frame *f) {
        auto d = f->instr_ptr - (uint16_t *)code(f)->co_code_adaptive;
        return d < 0 ? 0 : (int32_t)(d * 2);
    }
    static PyObject **localsplus(Frame *f) { return f->localsplus; }
    // FRAME_SUSPENDED -2 and FRAME_SUSPENDED_YIELD_FROM -1 (Include/internal/pycore_frame.h).
    static bool generator_suspended(PyObject *gen) {
        int8_t st = ((PyGenObject *)gen)->gi_frame_state;
        return st == -2 || st == -1;
    }
    static const void *raw_exec(Frame *f) { return f->f_executable; }
    static const void *raw_ip(Frame *f) { return f->instr_ptr; }
    static int raw_owner(Frame *f) { return f->owner; }
    static bool skip_by_owner(Frame *f) { return f->owner == OWNED_BY_CSTACK; }
};
}  // namespace
}  // namespace taskleak::cpython

TASKLEAK_DEFINE_FRAME_API(Layout313)
