// Is a finished task still held from outside, or only by its own garbage cycle?
//
// A leak check needs to know, for the few tasks of a scope still alive at its
// end, whether anything outside keeps them alive. Running the collector to
// find out costs a walk of the whole heap (seconds per thousand tests on a big
// heap). This answers the same question locally, the way the collector itself
// decides, but only over the objects reachable from those tasks:
//
//   S    = GC-tracked objects reachable from the tasks, not entering the
//          `stops` (event loops, module dicts), types or modules - those are
//          alive anyway, and entering them would make S the whole heap;
//   refs = each object's reference count minus the references from inside S
//          (and minus the caller's one list reference to each task);
//   an object with refs > 0 is referenced from outside S; whatever S-object it
//   reaches is alive. A task not reached that way is cyclic garbage.
//
// `transparent` objects (a test's own objects: its fixture values, its
// instance) are entered too, but what refers to them does not make them
// alive: they die with the scope, so a task held only through them is not
// held from outside.
//
// Cost: proportional to S, bounded by `limit` (None past it: the caller then
// falls back to a collection). No Python code runs and nothing is allocated
// on the Python heap during the traversal.
#include <Python.h>
#include <nanobind/nanobind.h>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

namespace taskleak {

namespace {

bool tracked_container(PyObject *o) {
    return PyObject_IS_GC(o) && PyObject_GC_IsTracked(o) && !PyType_Check(o) && !PyModule_Check(o);
}

struct Sub {
    std::unordered_map<PyObject *, Py_ssize_t> refs;  // object -> references from outside S
    std::unordered_set<PyObject *> stops;
    std::vector<PyObject *> order;
    size_t limit = 0;
    bool overflow = false;
};

int add_child(PyObject *child, void *arg) {
    Sub &s = *(Sub *)arg;
    if (child == nullptr || s.overflow || !tracked_container(child) || s.stops.count(child)) return 0;
    if (s.refs.emplace(child, Py_REFCNT(child)).second) {
        s.order.push_back(child);
        if (s.order.size() > s.limit) s.overflow = true;
    }
    return 0;
}

int subtract_internal(PyObject *child, void *arg) {
    Sub &s = *(Sub *)arg;
    auto it = s.refs.find(child);
    if (it != s.refs.end()) it->second--;
    return 0;
}

struct Mark {
    Sub *s;
    std::unordered_set<PyObject *> *alive;
    std::vector<PyObject *> *todo;
};

int mark_child(PyObject *child, void *arg) {
    Mark &m = *(Mark *)arg;
    if (m.s->refs.count(child) && m.alive->insert(child).second) m.todo->push_back(child);
    return 0;
}

void traverse(PyObject *o, visitproc visit, void *arg) {
    traverseproc tp = Py_TYPE(o)->tp_traverse;
    if (tp != nullptr) tp(o, visit, arg);
}

}  // namespace

// For each task in `tasks` (a list, one reference each): true if something
// outside its own reference cycles keeps it alive. None if more than `limit`
// objects would have to be examined.
static nb::object held_from_outside(nb::handle tasks, nb::handle stops, size_t limit, nb::handle transparent) {
    if (!PyList_Check(tasks.ptr())) throw nb::type_error("tasks must be a list");
    Sub s;
    s.limit = limit;
    PyObject *it = PyObject_GetIter(stops.ptr());
    if (it == nullptr) throw nb::python_error();
    for (PyObject *o; (o = PyIter_Next(it)) != nullptr;) {
        s.stops.insert(o);  // the caller keeps the stops alive for the call
        Py_DECREF(o);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) throw nb::python_error();

    Py_ssize_t n = PyList_GET_SIZE(tasks.ptr());
    std::vector<PyObject *> roots((size_t)n);
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject *t = PyList_GET_ITEM(tasks.ptr(), i);
        roots[(size_t)i] = t;
        add_child(t, &s);
    }
    std::vector<PyObject *> clear;
    if (!transparent.is_none()) {
        if (!PyList_Check(transparent.ptr())) throw nb::type_error("transparent must be a list");
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(transparent.ptr()); ++i) {
            PyObject *o = PyList_GET_ITEM(transparent.ptr(), i);
            if (!tracked_container(o) || s.stops.count(o)) continue;
            clear.push_back(o);
            add_child(o, &s);
        }
    }
    for (size_t i = 0; i < s.order.size() && !s.overflow; ++i) traverse(s.order[i], add_child, &s);
    if (s.overflow) return nb::none();
    for (PyObject *o : s.order) traverse(o, subtract_internal, &s);
    for (PyObject *t : roots) {
        auto f = s.refs.find(t);
        if (f != s.refs.end()) f->second--;  // the caller's list
    }
    for (PyObject *o : clear) s.refs[o] = 0;  // whatever holds them, they die with the scope
    std::unordered_set<PyObject *> alive;
    std::vector<PyObject *> todo;
    for (auto &kv : s.refs)
        if (kv.second > 0 && alive.insert(kv.first).second) todo.push_back(kv.first);
    Mark m{&s, &alive, &todo};
    while (!todo.empty()) {
        PyObject *o = todo.back();
        todo.pop_back();
        traverse(o, mark_child, &m);
    }
    nb::list out;
    for (PyObject *t : roots) out.append(nb::bool_(!s.refs.count(t) || alive.count(t) > 0));
    return out;
}

void bind_holder_search(nb::module_ &m) {
    m.def("held_from_outside", &held_from_outside, "tasks"_a, "stops"_a, "limit"_a, "transparent"_a.none() = nb::none(),
          "[bool per task]: held by something outside its own reference cycles (None past `limit` "
          "objects). `stops` (loops, module dicts) are taken as alive and not entered; `transparent` "
          "objects are entered but never alive by themselves.");
}

}  // namespace taskleak
