#include "tasks/await_chain.hpp"
#include "cpython/attr_reader.hpp"
#include <cstring>

namespace taskleak {

static bool is_generator_like(PyObject *o) {
    // Exact checks: the three types cannot be subclassed (no
    // Py_TPFLAGS_BASETYPE), and PyGen_Check walks the MRO of everything else.
    return PyCoro_CheckExact(o) || PyGen_CheckExact(o) || PyAsyncGen_CheckExact(o);
}

// Wrapper objects with no public link to the generator they drive:
// `coro.__await__()` and `agen.__anext__()`/`athrow()` results. Their
// tp_traverse does visit that generator, which is how we find it.
static bool is_wrapper(PyObject *o) {
    const char *n = Py_TYPE(o)->tp_name;
    if (n[0] != 'c' && n[0] != 'a') return false;  // most leaves: "_asyncio.FutureIter", ...
    return std::strcmp(n, "coroutine_wrapper") == 0 || std::strcmp(n, "async_generator_asend") == 0 ||
           std::strcmp(n, "async_generator_athrow") == 0;
}

static int visit_find_gen(PyObject *o, void *arg) {
    auto **found = (PyObject **)arg;
    if (*found == nullptr && o != nullptr && is_generator_like(o)) *found = o;
    return 0;
}

static PyObject *unwrap(PyObject *o) {
    traverseproc tp = Py_TYPE(o)->tp_traverse;
    if (tp == nullptr) return nullptr;
    PyObject *found = nullptr;
    tp(o, visit_find_gen, &found);
    Py_XINCREF(found);
    return found;
}

static PyObject *awaited_by(PyObject *gen) {
    static cpython::AttrReader cr_await("cr_await"), gi_yieldfrom("gi_yieldfrom"), ag_await("ag_await");
    return PyCoro_CheckExact(gen)       ? cr_await.get(gen)
           : PyAsyncGen_CheckExact(gen) ? ag_await.get(gen)
                                        : gi_yieldfrom.get(gen);
}

int walk_await_chain(PyObject *coro, cpython::CodeLoc *out, int max, PyObject **leaf) {
    *leaf = nullptr;
    int n = 0;
    Py_XINCREF(coro);
    PyObject *obj = coro;
    while (obj != nullptr && obj != Py_None && n < max) {
        PyObject *next = nullptr;
        if (is_generator_like(obj)) {
            if (!cpython::generator_location(obj, &out[n])) break;
            ++n;
            next = awaited_by(obj);
        } else if (is_wrapper(obj)) {
            next = unwrap(obj);
            if (next == nullptr) {
                *leaf = obj;
                return n;
            }
        } else {
            *leaf = obj;  // transfer our reference
            return n;
        }
        Py_DECREF(obj);
        obj = next;
    }
    Py_XDECREF(obj);
    return n;
}

}  // namespace taskleak
