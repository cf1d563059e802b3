// CPython 3.10/3.11: walk the collector's generation lists in place, as
// PyUnstable_GC_VisitObjects does from 3.12 on. gc.get_objects() (the
// fallback, heap_walk_gc_module.cpp) builds a list of every tracked object
// (a million increfs and 8 MB) before the first visit; this reads the lists.
//
// Mirrors (Include/internal/pycore_gc.h and pycore_interp.h, identical in
// 3.10 and 3.11):
//   PyGC_Head { uintptr_t _gc_next; uintptr_t _gc_prev; }   before each object
//   struct gc_generation { PyGC_Head head; int threshold; int count; }
//   struct _gc_runtime_state { ...; struct gc_generation generations[3];
//       PyGC_Head *generation0; struct gc_generation permanent_generation;
//       struct gc_generation_stats generation_stats[3]; int collecting; ... }
// The generation heads are private, so they are found from a fresh tracked
// object: tracking appends at the tail of generation 0, so its _gc_next is
// that generation's head. Each fact is checked before the walk (the head's
// prev is the fresh object, `generation0` points back at the head, no
// collection is running); any mismatch falls back to gc.get_objects() and
// heap_walk_mode() says so.
#include "cpython/heap_walk.hpp"
#include <cstddef>
#include <cstdint>

#if PY_VERSION_HEX < 0x030A0000 || PY_VERSION_HEX >= 0x030C0000
#error "heap_walk_gc_lists.cpp mirrors CPython 3.10/3.11 only"
#endif
#if defined(Py_DEBUG) || defined(Py_TRACE_REFS)
#error "the 3.10/3.11 GC mirrors assume a release build"
#endif

namespace taskleak::cpython {

bool visit_gc_objects_via_list(ObjectVisitor visit, void *arg);  // heap_walk_gc_module.cpp

namespace {

struct GCHead {
    uintptr_t next;
    uintptr_t prev;  // low 2 bits are flags
};
struct Generation {
    GCHead head;
    int threshold;
    int count;
};
struct GCState {  // from generations[] on
    Generation generations[3];
    GCHead *generation0;
    Generation permanent_generation;
    Py_ssize_t generation_stats[3][3];  // collections, collected, uncollectable
    int collecting;
};
static_assert(sizeof(GCHead) == 2 * sizeof(void *), "PyGC_Head is two words in 3.10/3.11");
static_assert(offsetof(GCState, generation0) == 72, "gc_generation[3] then generation0");
static_assert(offsetof(GCState, collecting) == 176, "generation_stats[3] then collecting");
constexpr uintptr_t PREV_MASK = ~(uintptr_t)3;

GCHead *as_gc(PyObject *o) { return (GCHead *)o - 1; }
PyObject *from_gc(GCHead *g) { return (PyObject *)(g + 1); }

// The collector's state, found and checked afresh on every walk (cheap: one
// list allocation). nullptr when any check fails.
GCState *find_state() {
    PyObject *probe = PyList_New(0);  // tracked at creation, appended to generation 0
    if (probe == nullptr) {
        PyErr_Clear();
        return nullptr;
    }
    GCState *state = nullptr;
    if (PyObject_GC_IsTracked(probe)) {
        auto *head = (GCHead *)as_gc(probe)->next;
        auto *st = (GCState *)head;  // generations[0].head is the struct's first member here
        if (head != nullptr && (GCHead *)(head->prev & PREV_MASK) == as_gc(probe) && st->generation0 == head &&
            st->collecting == 0)
            state = st;
    }
    Py_DECREF(probe);
    return state;
}

bool fallback_used = false;

}  // namespace

bool visit_gc_objects(ObjectVisitor visit, void *arg) {
    GCState *st = find_state();
    if (st == nullptr) {
        fallback_used = true;
        return visit_gc_objects_via_list(visit, arg);
    }
    // Same order and same generations as gc.get_objects() (the permanent
    // generation, objects frozen by gc.freeze(), is not visited).
    for (Generation &gen : st->generations) {
        GCHead *head = &gen.head;
        for (auto *g = (GCHead *)head->next; g != head;) {
            GCHead *next = (GCHead *)g->next;  // read first: the visitor may stop
            if (!visit(from_gc(g), arg)) return true;
            g = next;
        }
    }
    return true;
}

const char *heap_walk_mode() { return fallback_used ? "gc.get_objects" : "gc-lists"; }

}  // namespace taskleak::cpython
