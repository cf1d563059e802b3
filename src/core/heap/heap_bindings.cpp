// Bindings of the heap analysis (heap_index, type_census). Glue only: names,
// labels and rendering are made in taskleak/heap.py.
#include "cpython/heap_walk.hpp"
#include "heap/forward_search.hpp"
#include "heap/heap_index.hpp"
#include "heap/type_census.hpp"
#include <nanobind/nanobind.h>

namespace nb = nanobind;
using namespace nb::literals;
namespace taskleak {

static std::vector<PyObject *> borrowed_items(nb::handle seq, const char *what) {
    if (!PyList_Check(seq.ptr())) throw nb::type_error(what);
    std::vector<PyObject *> out((size_t)PyList_GET_SIZE(seq.ptr()));
    for (size_t i = 0; i < out.size(); ++i) out[i] = PyList_GET_ITEM(seq.ptr(), (Py_ssize_t)i);
    return out;
}

void bind_heap(nb::module_ &m) {
    m.attr("HEAP_WALK") = cpython::heap_walk_mode();  // at import; heap_walk_mode() says what the last walk used
    m.def("heap_walk_mode", []() { return cpython::heap_walk_mode(); });

    nb::class_<HeapIndex>(m, "HeapIndexCore")
        .def_prop_ro("objects", &HeapIndex::objects)
        .def_prop_ro("edges", &HeapIndex::edges)
        .def_prop_ro("bytes", &HeapIndex::bytes)
        .def_prop_ro("build_seconds", &HeapIndex::build_seconds)
        .def(
            "who_holds",
            [](HeapIndex &ix, nb::handle target, nb::handle roots, nb::handle stops, int max_depth, int max_paths,
               bool live_seed) {
                // `roots` and `stops` are lists the caller keeps alive for the
                // whole call: the index trusts them to be live objects.
                std::vector<PyObject *> r = borrowed_items(roots, "roots must be a list");
                std::vector<PyObject *> s = borrowed_items(stops, "stops must be a list");
                std::vector<HolderChain> found;
                bool stale = false;
                if (!ix.who_holds(target.ptr(), r, s, max_depth, max_paths, &found, &stale, live_seed)) {
                    for (auto &c : found)
                        for (PyObject *o : c.objs) Py_DECREF(o);
                    throw nb::python_error();
                }
                nb::list out;
                for (auto &c : found) {
                    nb::list objs;
                    for (PyObject *o : c.objs) objs.append(nb::steal(o));  // the chain's references
                    out.append(nb::make_tuple(c.root, objs));
                }
                return nb::make_tuple(out, stale);
            },
            "target"_a, "roots"_a, "stops"_a, "max_depth"_a, "max_paths"_a, "live_seed"_a = false,
            "[(root, [root object ... target])], stale. root >= 0: position in `roots`; "
            "-1: a class; -2: nothing tracked refers to the first object.");

    m.def(
        "build_heap_index",
        [](size_t max_objects) {
            auto *ix = new HeapIndex();
            if (!ix->build(max_objects)) {
                delete ix;
                throw nb::python_error();
            }
            return ix;
        },
        "max_objects"_a, nb::rv_policy::take_ownership,
        "One walk of the GC-tracked heap into a reverse reference index (addresses only).");

    m.def(
        "forward_search",
        [](nb::handle target, nb::handle roots, nb::handle stops, nb::handle stop_types, int max_depth, int max_paths) {
            // `roots`, `stops` and `stop_types` are lists the caller keeps alive for the call.
            std::vector<PyObject *> r = borrowed_items(roots, "roots must be a list");
            std::vector<PyObject *> s = borrowed_items(stops, "stops must be a list");
            std::vector<PyObject *> ty = borrowed_items(stop_types, "stop_types must be a list");
            ForwardSearchStats st;
            std::vector<HolderChain> found = forward_search(target.ptr(), r, s, ty, max_depth, max_paths, &st);
            nb::list out;
            for (auto &c : found) {
                nb::list objs;
                for (PyObject *o : c.objs) objs.append(nb::steal(o));  // the chain's references
                out.append(nb::make_tuple(c.root, objs));
            }
            return nb::make_tuple(out, st.visited, st.exhausted);
        },
        "target"_a, "roots"_a, "stops"_a, "stop_types"_a, "max_depth"_a, "max_paths"_a,
        "([(root index, [root object ... target])], objects visited, exhausted): breadth-first from "
        "the roots to the first level that reaches `target`; no index, no Python code runs.");

    m.def(
        "forward_search_many",
        [](nb::handle targets, nb::handle roots, nb::handle stops, nb::handle stop_types, int max_depth,
           int max_paths) {
            // All four are lists the caller keeps alive for the call.
            std::vector<PyObject *> t = borrowed_items(targets, "targets must be a list");
            std::vector<PyObject *> r = borrowed_items(roots, "roots must be a list");
            std::vector<PyObject *> s = borrowed_items(stops, "stops must be a list");
            std::vector<PyObject *> ty = borrowed_items(stop_types, "stop_types must be a list");
            ForwardSearchStats st;
            std::vector<std::vector<HolderChain>> found = forward_search_many(t, r, s, ty, max_depth, max_paths, &st);
            nb::list out;
            for (auto &per_target : found) {
                nb::list paths;
                for (auto &c : per_target) {
                    nb::list objs;
                    for (PyObject *o : c.objs) objs.append(nb::steal(o));  // the chain's references
                    paths.append(nb::make_tuple(c.root, objs));
                }
                out.append(paths);
            }
            return nb::make_tuple(out, st.visited, st.exhausted);
        },
        "targets"_a, "roots"_a, "stops"_a, "stop_types"_a, "max_depth"_a, "max_paths"_a,
        "([[(root index, [root object ... target])] per target], objects visited, exhausted): "
        "forward_search for several targets in one walk.");

    m.def(
        "type_census",
        []() {
            TypeCensus c;
            if (!c.collect()) throw nb::python_error();
            nb::list types, coros;
            for (auto &r : c.types) types.append(nb::make_tuple(nb::borrow(r.first), r.second));
            for (auto &r : c.coros) coros.append(nb::make_tuple(nb::borrow(r.first), r.second));
            return nb::make_tuple(c.total, types, coros);
        },
        "(total, [(type, count)], [(coroutine code, count)]) over one heap walk; never collects.");
}

}  // namespace taskleak
