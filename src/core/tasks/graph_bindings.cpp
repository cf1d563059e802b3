// Bindings for the diagnosis toolkit (wait analysis, orphaned tasks). Glue
// only: the check itself is in orphan_check.cpp.
#include "tasks/orphan_check.hpp"
#include "tasks/task_census.hpp"
#include <nanobind/nanobind.h>

namespace nb = nanobind;
using namespace nb::literals;

namespace taskleak {

// Modules and their dicts are hubs, as are the tasks' event loops; every
// reference a census holds (task, waiter, leaf of each row) is taskleak's own
// and is discounted.
static void prepare(OrphanAnalysis &a, TaskCensus &census) {
    size_t held = 0;
    for (TaskCensus *c : TaskCensus::live()) held += c->rows.size() * 3;
    a.reserve(census.rows.size() * 8, held);
    PyObject *events = PyImport_ImportModule("asyncio.events");
    PyObject *base = events ? PyObject_GetAttrString(events, "AbstractEventLoop") : nullptr;
    if (base != nullptr && PyType_Check(base)) a.set_loop_base((PyTypeObject *)base);  // kept alive by its module
    Py_XDECREF(base);
    Py_XDECREF(events);
    PyErr_Clear();
    PyObject *modules = PyImport_GetModuleDict();  // borrowed
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(modules, &pos, &key, &value)) {
        if (!PyModule_Check(value)) continue;
        if (PyObject *d = PyModule_GetDict(value)) a.add_hub(d);
    }
    for (TaskCensus *c : TaskCensus::live()) {
        for (const CensusRow &r : c->rows) {
            a.add_held(r.task);
            if (r.waiter) a.add_held(r.waiter);
            if (r.leaf) a.add_held(r.leaf);
        }
    }
    for (const CensusRow &r : census.rows) a.add_task_type(Py_TYPE(r.task));
}

void bind_graph(nb::module_ &m) {
    m.def(
        "orphan_analysis",
        [](TaskCensus &census, nb::handle holders, size_t cap) {
            OrphanAnalysis a(cap);
            prepare(a, census);
            // taskleak's own Python containers (the snapshot's row tuples): what
            // they reference is discounted like the census' references.
            if (!holders.is_none()) {
                for (nb::handle h : holders) {
                    traverseproc tp = Py_TYPE(h.ptr())->tp_traverse;
                    if (tp != nullptr)
                        tp(
                            h.ptr(),
                            [](PyObject *o, void *arg) {
                                if (o != nullptr) static_cast<OrphanAnalysis *>(arg)->add_held(o);
                                return 0;
                            },
                            &a);
                }
            }
            std::vector<std::pair<PyObject *, PyObject *>> checks;
            checks.reserve(census.rows.size());
            for (const CensusRow &r : census.rows)
                checks.emplace_back(r.task, r.state == TaskState::Pending ? r.waiter : nullptr);
            a.run(checks);
            nb::list verdicts, roots;
            for (const OrphanResult &r : a.results()) {
                verdicts.append((int)r.verdict);
                roots.append(r.root ? nb::object(nb::str(Py_TYPE(r.root)->tp_name)) : nb::object(nb::none()));
            }
            return nb::make_tuple(verdicts, roots, a.graph_size());
        },
        "census"_a, "holders"_a.none() = nb::none(), "cap"_a = 4000000,
        "Orphan check of every row: ([verdict], [type name of the external holder | None], objects examined).\n"
        "verdict: 0 not waiting, 1 reachable from outside, 2 orphaned, 3 unknown (graph over `cap`).");
    m.def(
        "census_objects",
        [](TaskCensus &census, size_t i) {
            if (i >= census.rows.size()) throw nb::index_error();
            const CensusRow &r = census.rows[i];
            return nb::make_tuple(r.waiter ? nb::borrow(r.waiter) : nb::object(nb::none()),
                                  r.leaf ? nb::borrow(r.leaf) : nb::object(nb::none()));
        },
        "census"_a, "i"_a, "(waiter, leaf) of a row, without keeping them in a Python tuple.");
}

}  // namespace taskleak
