#include "heap/type_census.hpp"
#include "cpython/frames.hpp"
#include "cpython/heap_walk.hpp"
#include <unordered_map>

namespace taskleak {

namespace {

// Address -> position in a (key, count) vector. The walk sees ~1M objects and
// a few hundred types. On 3.14+ the incremental collector keeps its lists in
// reachability order, so consecutive objects rarely share a type: a small
// direct-mapped cache in front of the map answers nearly every lookup in a
// couple of nanoseconds.
struct Counter {
    std::vector<std::pair<PyObject *, size_t>> *rows;
    std::unordered_map<PyObject *, size_t> pos;
    static constexpr size_t WAYS = 256;
    PyObject *cache_key[WAYS] = {};
    size_t cache_pos[WAYS] = {};

    // Takes a reference to `key` the first time it is seen: increfs are
    // allowed during the walk, allocations of Python objects are not, and the
    // reference keeps types/code alive until their names are made.
    void add(PyObject *key) {
        size_t w = ((uintptr_t)key >> 4) % WAYS;
        if (cache_key[w] != key) {
            auto it = pos.find(key);
            if (it == pos.end()) {
                Py_INCREF(key);
                it = pos.emplace(key, rows->size()).first;
                rows->emplace_back(key, 0);
            }
            cache_key[w] = key;
            cache_pos[w] = it->second;
        }
        ++(*rows)[cache_pos[w]].second;
    }
};

}  // namespace

TypeCensus::~TypeCensus() {
    for (auto &r : types) Py_DECREF(r.first);
    for (auto &r : coros) Py_DECREF(r.first);
}

bool TypeCensus::collect() {
    Counter by_type{&types};
    Counter by_code{&coros};
    // Finished coroutines have no frame to read the code from; their
    // `cr_code` is asked for after the walk, when attribute access (which may
    // allocate) is allowed again. Held strongly until then.
    std::vector<PyObject *> finished;
    bool ok = cpython::visit_gc_objects([&](PyObject *o) {
        ++total;
        by_type.add((PyObject *)Py_TYPE(o));
        if (PyCoro_CheckExact(o)) {
            cpython::CodeLoc loc;
            if (cpython::generator_location(o, &loc)) {
                by_code.add((PyObject *)loc.code);
            } else {
                Py_INCREF(o);
                finished.push_back(o);
            }
        }
        return true;
    });
    static PyObject *cr_code = PyUnicode_InternFromString("cr_code");
    for (PyObject *o : finished) {
        if (ok && cr_code != nullptr) {
            PyObject *code = PyObject_GetAttr(o, cr_code);
            if (code != nullptr) {
                by_code.add(code);
                Py_DECREF(code);  // by_code holds its own reference
            } else {
                PyErr_Clear();
            }
        }
        Py_DECREF(o);
    }
    return ok;
}

}  // namespace taskleak
