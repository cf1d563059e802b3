// CPython 3.12+: PyUnstable_GC_VisitObjects walks the collector's generation
// lists in place: no list of a million references is built, no refcount is
// touched except the one the API itself holds around each callback.
#include "cpython/heap_walk.hpp"

namespace taskleak::cpython {

namespace {
struct Trampoline {
    ObjectVisitor visit;
    void *arg;
};
int trampoline(PyObject *obj, void *arg) {
    auto *t = (Trampoline *)arg;
    return t->visit(obj, t->arg) ? 1 : 0;
}
}  // namespace

bool visit_gc_objects(ObjectVisitor visit, void *arg) {
    Trampoline t{visit, arg};
    PyUnstable_GC_VisitObjects(trampoline, &t);
    return true;
}

const char *heap_walk_mode() { return "gc-visit"; }

}  // namespace taskleak::cpython
