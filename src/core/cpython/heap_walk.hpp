// The interpreter-internals boundary for heap walks: visiting every object the
// cyclic garbage collector tracks. 3.12+ has a public (unstable) API for it
// (heap_walk_312plus.cpp); 3.10/3.11 read the generation lists through a
// checked mirror (heap_walk_gc_lists.cpp), falling back to gc.get_objects()
// (heap_walk_gc_module.cpp). CMake picks. None runs a collection.
#pragma once
#include <Python.h>

namespace taskleak::cpython {

// Called once per GC-tracked object with a borrowed reference. The visitor
// must not allocate or free Python objects (on 3.12+ the walk follows the
// collector's own lists) and must not run Python code; it may change
// reference counts of objects that stay alive. Return false to stop the walk.
using ObjectVisitor = bool (*)(PyObject *obj, void *arg);

// Returns false with a Python exception set if the walk could not run.
bool visit_gc_objects(ObjectVisitor visit, void *arg);

// "gc-visit" (PyUnstable_GC_VisitObjects), "gc-lists" (3.10/3.11 mirror) or
// "gc.get_objects" (the fallback).
const char *heap_walk_mode();

// Convenience for lambdas: visit_gc_objects([&](PyObject *o) { ...; return true; }).
template <class F>
bool visit_gc_objects(F &&f) {
    return visit_gc_objects([](PyObject *o, void *arg) { return (*(F *)arg)(o); }, (void *)&f);
}

}  // namespace taskleak::cpython
