// The frame and generator layout shared by CPython 3.14 and 3.15 (GIL-enabled,
// non-debug builds): mirrors of _PyInterpreterFrame and _PyGenObject_HEAD from
// Include/internal/pycore_interpframe_structs.h, identical in both versions
// (checked against each version's headers and its _Py_DebugOffsets).
// Included only by frames_314.cpp and frames_315.cpp, which say what differs.
//  - f_executable, f_funcobj and localsplus[] are _PyStackRefs: a uintptr_t
//    whose low bits are tags (pycore_stackref.h, GIL build: Py_TAG_BITS 3,
//    Py_TAG_REFCNT 1 = borrowed/immortal, NULL is bits == 1, Py_INT_TAG 3 =
//    tagged int, not an object);
//  - stacktop became the stackpointer pointer; `visited` byte after `owner`;
//  - _PyFrame_IsIncomplete treats owner >= INTERPRETER (3) as incomplete;
//  - PyGenObject is opaque in the public headers.
#pragma once
#include "cpython/interpreter_frames.hpp"
#include <cstddef>

#if defined(Py_GIL_DISABLED)
#error \
    "the 3.14/3.15 mirrors are for GIL-enabled builds (free-threaded frames carry tlbc_index and other stackref tags)"
#endif

namespace taskleak::cpython {
namespace {

using StackRef = uintptr_t;  // _PyStackRef { uintptr_t bits; }
constexpr uintptr_t TAG_BITS = 3;
constexpr uintptr_t INT_TAG = 3;
constexpr uintptr_t NULL_BITS = 1;

// A borrowed PyObject* for an object stackref; nullptr for NULL and tagged ints.
inline PyObject *untag(StackRef r) {
    if (r == NULL_BITS || (r & TAG_BITS) == INT_TAG) return nullptr;
    return (PyObject *)(r & ~TAG_BITS);
}

struct StackrefFrame {
    StackRef f_executable;
    StackrefFrame *previous;
    StackRef f_funcobj;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyObject *frame_obj;
    uint16_t *instr_ptr;  // _Py_CODEUNIT is 2 bytes
    StackRef *stackpointer;
    uint16_t return_offset;
    char owner;
    uint8_t visited;
    StackRef localsplus[1];
};
static_assert(offsetof(StackrefFrame, instr_ptr) == 56, "3.14/3.15 _PyInterpreterFrame.instr_ptr");
static_assert(offsetof(StackrefFrame, owner) == 74, "3.14/3.15 _PyInterpreterFrame.owner");
static_assert(offsetof(StackrefFrame, localsplus) == 80, "3.14/3.15 _PyInterpreterFrame.localsplus");

// _PyGenObject_HEAD(gi): shared by generators, coroutines and async generators.
struct StackrefGen {
    PyObject_HEAD PyObject *gi_weakreflist;
    PyObject *gi_name;
    PyObject *gi_qualname;
    _PyErr_StackItem gi_exc_state;
    PyObject *gi_origin_or_finalizer;
    char gi_hooks_inited;
    char gi_closed;
    char gi_running_async;
    int8_t gi_frame_state;
    StackrefFrame gi_iframe;
};
static_assert(offsetof(StackrefGen, gi_frame_state) == 67, "3.14/3.15 gi_frame_state");
static_assert(offsetof(StackrefGen, gi_iframe) == 72, "3.14/3.15 gi_iframe");

constexpr char OWNED_BY_GENERATOR = 1;
constexpr char OWNED_BY_INTERPRETER = 3;  // and 3.14's CSTACK (4): never complete frames

// genobject.c sets tp_basicsize = offsetof(PyGenObject, gi_iframe.localsplus)
// for all three types; a mismatch means this mirror is wrong for the running
// interpreter, and generator frames are then not read at all.
bool gen_layout_matches() {
    constexpr Py_ssize_t want = (Py_ssize_t)(offsetof(StackrefGen, gi_iframe) + offsetof(StackrefFrame, localsplus));
    return PyGen_Type.tp_basicsize == want && PyCoro_Type.tp_basicsize == want && PyAsyncGen_Type.tp_basicsize == want;
}

// States says which gi_frame_state values mean the frame is still there,
// and which that it is suspended (the numbering changed between 3.14 and
// 3.15).
template <class States>
struct StackrefLayout {
    using Frame = StackrefFrame;
    static Frame *current(PyThreadState *ts) { return (Frame *)ts->current_frame; }
    static Frame *previous(Frame *f) { return f->previous; }
    static PyCodeObject *code(Frame *f) {
        PyObject *ex = untag(f->f_executable);
        return (ex != nullptr && PyCode_Check(ex)) ? (PyCodeObject *)ex : nullptr;
    }
    // _PyFrame_IsIncomplete, applied at every step as PyFrame_GetBack does.
    static bool skip(Frame *f) {
        if (f->owner >= OWNED_BY_INTERPRETER) return true;
        PyCodeObject *co = code(f);
        if (co == nullptr) return true;
        return f->owner != OWNED_BY_GENERATOR &&
               f->instr_ptr < (uint16_t *)co->co_code_adaptive + co->_co_firsttraceable;
    }
    static int32_t offset_bytes(Frame *f) {
        auto d = f->instr_ptr - (uint16_t *)code(f)->co_code_adaptive;
        return d < 0 ? 0 : (int32_t)(d * 2);
    }
    static PyObject *local(Frame *f, Py_ssize_t i) { return untag(f->localsplus[i]); }
    static const void *raw_exec(Frame *f) { return (const void *)f->f_executable; }
    static const void *raw_ip(Frame *f) { return f->instr_ptr; }
    static int raw_owner(Frame *f) { return f->owner; }
    static bool skip_by_owner(Frame *f) { return f->owner >= OWNED_BY_INTERPRETER; }
    static bool generator_suspended(PyObject *gen) { return States::suspended(((StackrefGen *)gen)->gi_frame_state); }
    static PyObject *stack_top(Frame *f) {
        PyCodeObject *co = code(f);
        if (co == nullptr || f->stackpointer <= f->localsplus + co->co_nlocalsplus) return nullptr;
        return untag(f->stackpointer[-1]);
    }
    static Frame *generator_frame(PyObject *gen) {
        if (!(PyGen_CheckExact(gen) || PyCoro_CheckExact(gen) || PyAsyncGen_CheckExact(gen))) return nullptr;
        static const bool ok = gen_layout_matches();
        if (!ok) return nullptr;
        auto *g = (StackrefGen *)gen;
        if (!States::frame_alive(g->gi_frame_state)) return nullptr;
        return &g->gi_iframe;
    }
};
}  // namespace
}  // namespace taskleak::cpython
