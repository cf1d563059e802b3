// Shared walk over CPython 3.11+ "interpreter frames" (_PyInterpreterFrame),
// parameterised by a Layout that each frames_3XX.cpp defines from a mirror of
// its version's private struct. Reading the structs directly costs ~3 ns a
// frame; PyFrame_GetBack would materialise a frame object for each (~1 µs).
#pragma once
#include "cpython/frames.hpp"
#include <cstring>
#include <type_traits>

namespace taskleak::cpython {

// Layout must provide:
//   using Frame = ...;                       the mirror struct
//   static Frame *current(PyThreadState *);  the innermost frame or nullptr
//   static Frame *previous(Frame *);
//   static PyCodeObject *code(Frame *);      nullptr if not a code frame
//   static bool skip(Frame *);               shim or incomplete frame
//   static int32_t offset_bytes(Frame *);
//   static PyObject **localsplus(Frame *);   (unless local() below is given)
// and may provide (required from 3.14 on, where PyGenObject is opaque and
// locals are tagged _PyStackRefs):
//   static Frame *generator_frame(PyObject *gen);   nullptr unless the frame
//                                                   of a live gen/coro/asyncgen
//   static PyObject *local(Frame *, Py_ssize_t i);  borrowed, untagged, or nullptr
//   static PyObject *stack_top(Frame *);            borrowed, or nullptr if empty
// Without them the 3.11-3.13 defaults below are used. Every Layout gives
//   static bool generator_suspended(PyObject *gen); of a live gen/coro/asyncgen
// (its gi_frame_state numbers are its version's).
template <class L, class = void>
struct has_generator_frame : std::false_type {};
template <class L>
struct has_generator_frame<L, std::void_t<decltype(L::generator_frame((PyObject *)nullptr))>> : std::true_type {};
template <class L, class = void>
struct has_local : std::false_type {};
template <class L>
struct has_local<L, std::void_t<decltype(L::local((typename L::Frame *)nullptr, (Py_ssize_t)0))>> : std::true_type {};

template <class Layout>
int walk_thread(CodeLoc *out, int max_depth);

// Optional raw accessors for the stack memo (see StackMemo in frames.hpp):
//   static const void *raw_exec(Frame *);  the code slot as stored (tag bits included)
//   static const void *raw_ip(Frame *);
//   static int raw_owner(Frame *);
//   static bool skip_by_owner(Frame *);    skip() decided by the owner alone
template <class L, class = void>
struct has_raw : std::false_type {};
template <class L>
struct has_raw<L, std::void_t<decltype(L::raw_exec((typename L::Frame *)nullptr)),
                              decltype(L::skip_by_owner((typename L::Frame *)nullptr))>> : std::true_type {};

template <class Layout>
int walk_thread_memo(CodeLoc *out, int max_depth, StackMemo *memo, bool *same) {
    *same = false;
    if constexpr (has_raw<Layout>::value) {
        PyThreadState *ts = PyThreadState_Get();
        if (memo->valid && memo->depth == max_depth) {
            // The frames are scattered (coroutine frames live in their
            // coroutine objects) and usually out of L1 by the next task:
            // fetch them all at once instead of one pointer hop at a time.
            // A prefetch never faults, whatever the address has become; the
            // walk below reads only frames it reached through the live chain.
            for (int i = 0; i < memo->raw_n; ++i) {
                __builtin_prefetch(memo->frame[i]);
                __builtin_prefetch((const char *)memo->frame[i] + 64);
            }
            auto *f = Layout::current(ts);
            int i = 0;
            for (; i < memo->raw_n && f != nullptr; ++i, f = Layout::previous(f))
                if (Layout::raw_exec(f) != memo->exec[i] || Layout::raw_ip(f) != memo->ip[i] ||
                    Layout::raw_owner(f) != memo->owner[i])
                    break;
            if (i == memo->raw_n && (memo->n == max_depth || f == nullptr)) {
                *same = true;
                return memo->n;
            }
        }
        // Full walk, recording the raw frames. The memo stays invalid when a
        // frame was skipped for a reason that depends on its code object
        // (not kept alive by the interned stack) or the walk is too long.
        bool valid = true;
        int n = 0, raw = 0;
        for (auto *f = Layout::current(ts); f != nullptr && n < max_depth; f = Layout::previous(f)) {
            if (raw < StackMemo::RAW_MAX) {
                memo->frame[raw] = f;
                memo->exec[raw] = Layout::raw_exec(f);
                memo->ip[raw] = Layout::raw_ip(f);
                memo->owner[raw] = Layout::raw_owner(f);
            }
            ++raw;
            if (Layout::skip_by_owner(f)) continue;
            if (Layout::skip(f)) {
                valid = false;
                continue;
            }
            PyCodeObject *co = Layout::code(f);
            if (co == nullptr) {
                valid = false;
                continue;
            }
            out[n].code = co;
            out[n].offset = Layout::offset_bytes(f);
            ++n;
        }
        memo->valid = valid && raw <= StackMemo::RAW_MAX;
        memo->raw_n = raw;
        memo->n = n;
        memo->depth = max_depth;
        return n;
    } else {
        memo->valid = false;
        return walk_thread<Layout>(out, max_depth);
    }
}

template <class Layout>
int walk_thread(CodeLoc *out, int max_depth) {
    PyThreadState *ts = PyThreadState_Get();
    int n = 0;
    for (auto *f = Layout::current(ts); f != nullptr && n < max_depth; f = Layout::previous(f)) {
        if (Layout::skip(f)) continue;
        PyCodeObject *co = Layout::code(f);
        if (co == nullptr) continue;
        out[n].code = co;
        out[n].offset = Layout::offset_bytes(f);
        ++n;
    }
    return n;
}

// Generators embed their frame at the end of the object (gi_iframe); it is
// only meaningful while gi_frame_state < FRAME_COMPLETED (1 on 3.11-3.13).
template <class Layout>
typename Layout::Frame *generator_frame(PyObject *gen) {
    if constexpr (has_generator_frame<Layout>::value) {
        return Layout::generator_frame(gen);
    } else {
#if PY_VERSION_HEX < 0x030E0000
        if (!(PyGen_Check(gen) || PyCoro_CheckExact(gen) || PyAsyncGen_CheckExact(gen))) return nullptr;
        auto *g = (PyGenObject *)gen;
        if (g->gi_frame_state >= 1) return nullptr;
        return (typename Layout::Frame *)g->gi_iframe;
#else
        static_assert(has_generator_frame<Layout>::value,
                      "PyGenObject is opaque from 3.14 on: the Layout must define generator_frame()");
        return nullptr;
#endif
    }
}

template <class L, class = void>
struct has_stack_top : std::false_type {};
template <class L>
struct has_stack_top<L, std::void_t<decltype(L::stack_top((typename L::Frame *)nullptr))>> : std::true_type {};

// 3.11-3.13: the value stack is localsplus[co_nlocalsplus .. stacktop).
template <class Layout>
PyObject *stack_top(typename Layout::Frame *f) {
    if constexpr (has_stack_top<Layout>::value) {
        return Layout::stack_top(f);
    } else {
        PyCodeObject *co = Layout::code(f);
        if (co == nullptr || f->stacktop <= co->co_nlocalsplus) return nullptr;
        return Layout::localsplus(f)[f->stacktop - 1];
    }
}

template <class Layout>
bool generator_suspension_impl(PyObject *gen, CodeLoc *loc, PyObject **top) {
    // The frame is inside the generator, past its header: its stack
    // pointer and then the value stack are lines the header's line does not
    // bring. Asked for at once they overlap: ~5% less census on 3.11 and
    // 3.13, ~2% on 3.14 (100,000 tasks, paired side builds).
    for (int line = 1; line < 5; ++line) __builtin_prefetch((const char *)gen + 64 * line);
    auto *f = generator_frame<Layout>(gen);
    if (f == nullptr || !Layout::generator_suspended(gen)) return false;
    PyCodeObject *co = Layout::code(f);
    if (co == nullptr) return false;
    loc->code = co;
    loc->offset = Layout::offset_bytes(f);
    *top = stack_top<Layout>(f);
    return true;
}

template <class Layout>
PyObject *frame_local(typename Layout::Frame *f, Py_ssize_t i) {
    if constexpr (has_local<Layout>::value) return Layout::local(f, i);
    else return Layout::localsplus(f)[i];
}

template <class Layout>
bool generator_location_impl(PyObject *gen, CodeLoc *out) {
    auto *f = generator_frame<Layout>(gen);
    if (f == nullptr) return false;
    PyCodeObject *co = Layout::code(f);
    if (co == nullptr) return false;
    out->code = co;
    out->offset = Layout::offset_bytes(f);
    return true;
}

template <class Layout>
PyObject *generator_local_impl(PyObject *gen, const char *name) {
    auto *f = generator_frame<Layout>(gen);
    if (f == nullptr) return nullptr;
    PyCodeObject *co = Layout::code(f);
    if (co == nullptr) return nullptr;
    PyObject *names = co->co_localsplusnames;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; ++i) {
        const char *s = PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, i));
        if (s == nullptr) {
            PyErr_Clear();
            return nullptr;
        }
        if (std::strcmp(s, name) == 0) {
            PyObject *v = frame_local<Layout>(f, i);
            if (v != nullptr && PyCell_Check(v)) v = PyCell_GET(v);
            return v;
        }
    }
    return nullptr;
}

}  // namespace taskleak::cpython

#define TASKLEAK_DEFINE_FRAME_API(Layout)                                                                          \
    namespace taskleak::cpython {                                                                                  \
    int capture_thread_stack(CodeLoc *out, int max_depth) { return walk_thread<Layout>(out, max_depth); }          \
    int capture_thread_stack_memo(CodeLoc *out, int max_depth, StackMemo *memo, bool *same) {                      \
        return walk_thread_memo<Layout>(out, max_depth, memo, same);                                               \
    }                                                                                                              \
    bool generator_location(PyObject *gen, CodeLoc *out) { return generator_location_impl<Layout>(gen, out); }     \
    bool generator_suspension(PyObject *gen, CodeLoc *loc, PyObject **top) {                                       \
        return generator_suspension_impl<Layout>(gen, loc, top);                                                   \
    }                                                                                                              \
    PyObject *generator_local(PyObject *gen, const char *name) { return generator_local_impl<Layout>(gen, name); } \
    const char *frame_walk_mode() { return "direct"; }                                                             \
    }
