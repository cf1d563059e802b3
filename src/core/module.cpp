// Python bindings of taskleak._core. Only glue lives here; the logic is in the
// files named for each concern. Functions on the task-creation hot path are
// plain PyCFunctions (creation_hook.cpp), not nanobind wrappers, to keep the
// call as cheap as CPython allows.
#include "tasks/await_chain.hpp"
#include "cpython/frames.hpp"
#include "cpython/running_task.hpp"
#include "cpython/task_lists.hpp"
#include "cpython/weakref_list.hpp"
#include "tasks/task_census.hpp"
#include "tracking/tracker.hpp"
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <cstring>
#include <unordered_set>

namespace nb = nanobind;
using namespace nb::literals;

namespace taskleak {
PyObject *make_registry_add();
PyObject *make_gc_phase();
void init_callbacks();
PyObject *make_chaining_factory_type();
PyObject *make_fast_create_task_type();
void bind_graph(nb::module_ &m);          // graph_bindings.cpp
void bind_heap(nb::module_ &m);           // heap_bindings.cpp
void bind_holder_search(nb::module_ &m);  // heap/holder_search.cpp
void bind_monitor(nb::module_ &m);        // monitor/monitor_bindings.cpp
void bind_watchdog(nb::module_ &m);       // watchdog/watchdog_bindings.cpp
void bind_live(nb::module_ &m);           // live/live_bindings.cpp
}  // namespace taskleak

using namespace taskleak;

// 3.10 code objects have no co_qualname; the Python side can resolve it.
static PyObject *qualname_resolver = nullptr;

static nb::object code_name(PyObject *code) {
    PyObject *q = PyObject_GetAttrString(code, "co_qualname");  // 3.11+
    if (q == nullptr) {
        PyErr_Clear();
        if (qualname_resolver != nullptr) {
            q = PyObject_CallOneArg(qualname_resolver, code);
            if (q != nullptr && PyUnicode_Check(q)) return nb::steal(q);
            Py_XDECREF(q);
            PyErr_Clear();
        }
        q = PyObject_GetAttrString(code, "co_name");
        if (q == nullptr) {
            PyErr_Clear();
            return nb::str("?");
        }
    }
    return nb::steal(q);
}

// (filename, lineno, function) per frame: the only place stored (code, offset)
// pairs become text, and only when a report asks.
static nb::list render(const cpython::CodeLoc *frames, int n) {
    nb::list out;
    for (int i = 0; i < n; ++i) {
        PyCodeObject *co = frames[i].code;
        int line = PyCode_Addr2Line(co, frames[i].offset);
        out.append(nb::make_tuple(nb::borrow(co->co_filename), line, code_name((PyObject *)co)));
    }
    return out;
}

static nb::object stack_frames(StackTable &table, uint32_t id) {
    int n = 0;
    const cpython::CodeLoc *f = table.frames(id, &n);
    if (f == nullptr) return nb::none();
    return render(f, n);
}

namespace taskleak {
nb::object render_stack(uint32_t id) { return stack_frames(tracker().stacks, id); }
}  // namespace taskleak

static nb::object creation_info(nb::handle task) {
    const CreationRecord *r = lookup_record(task.ptr());
    if (r == nullptr) return nb::none();
    Tracker &t = tracker();
    unsigned long thread = r->thread < t.threads.size() ? t.threads[r->thread] : 0;
    nb::object frames = stack_frames(t.stacks, r->stack);
    return nb::make_tuple(r->serial, r->parent_serial, r->created_ns, thread, frames, r->stack == StackTable::DROPPED,
                          r->scope);
}

static nb::dict stats() {
    Tracker &t = tracker();
    nb::dict d;
    d["enabled"] = t.enabled;
    d["stack_depth"] = t.depth;
    d["live_records"] = t.tasks.size();
    d["table_bytes"] = t.tasks.bytes();
    d["buried_records"] = t.tasks.buried();
    d["stacks"] = t.stacks.size();
    d["stack_bytes"] = t.stacks.bytes();
    d["stack_limit"] = t.stacks.capacity_limit();
    d["stack_drops"] = t.stacks.drops();
    d["tracked_total"] = t.tracked_total;
    d["hook_errors"] = t.hook_errors;
    d["frame_walk"] = cpython::frame_walk_mode();
    d["record_size"] = sizeof(CreationRecord);
    d["stack_memo_hits"] = t.memo_hits;
    d["running_task"] = cpython::running_task_mode();
    d["task_lists"] = cpython::task_lists_mode();
    d["census_spare_bytes"] = TaskCensus::spare_bytes();
    d["finalizer_hook"] = t.finalize_type != nullptr;
    return d;
}

// A census holds strong references to tasks, their waiters and leaves. The
// collector must see them: a coroutine that keeps a snapshot of its own task
// in a local makes a cycle (task -> frame -> Snapshot -> census -> task)
// that, hidden from the GC, would keep the task and everything it holds
// alive forever.
static int census_traverse(PyObject *self, visitproc visit, void *arg) {
#if PY_VERSION_HEX >= 0x03090000
    Py_VISIT(Py_TYPE(self));
#endif
    if (!nb::inst_ready(self)) return 0;
    TaskCensus *c = nb::inst_ptr<TaskCensus>(self);
    for (const CensusRow &r : c->rows) {
        Py_VISIT(r.task);
        Py_VISIT(r.waiter);
        Py_VISIT(r.leaf);
    }
    return 0;
}

static int census_clear(PyObject *self) {
    if (!nb::inst_ready(self)) return 0;
    TaskCensus *c = nb::inst_ptr<TaskCensus>(self);
    for (CensusRow &r : c->rows) {
        Py_CLEAR(r.waiter);
        r.waiter_type = nullptr;
        Py_CLEAR(r.leaf);
        // The task stays until the census dies: rows are read by index and
        // a cleared census is only ever destroyed afterwards.
    }
    return 0;
}

// Row indices from a Python sequence of ints, each checked against the census.
static std::vector<uint32_t> census_rows(const TaskCensus &c, nb::handle group) {
    // A group groups(packed=...) returned as native uint32 (a memoryview
    // cast to "I"): copied as is, without an int object per row.
    if (PyMemoryView_Check(group.ptr())) {
        Py_buffer *view = PyMemoryView_GET_BUFFER(group.ptr());
        if (view->itemsize == 4 && view->format != nullptr && std::strcmp(view->format, "I") == 0 &&
            PyBuffer_IsContiguous(view, 'C')) {
            size_t n = (size_t)(view->len / 4);
            std::vector<uint32_t> rows(n);
            if (n > 0) std::memcpy(rows.data(), view->buf, n * 4);
            for (uint32_t i : rows)
                if ((size_t)i >= c.rows.size()) throw nb::index_error("row out of range");
            return rows;
        }
    }
    PyObject *seq = PySequence_Fast(group.ptr(), "rows must be a sequence of ints");
    if (seq == nullptr) throw nb::python_error();
    nb::object hold = nb::steal(seq);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    std::vector<uint32_t> rows((size_t)n);
    for (Py_ssize_t j = 0; j < n; ++j) {
        Py_ssize_t i = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, j));
        if (i == -1 && PyErr_Occurred()) throw nb::python_error();
        if (i < 0 || (size_t)i >= c.rows.size()) throw nb::index_error("row out of range");
        rows[(size_t)j] = (uint32_t)i;
    }
    return rows;
}

static PyType_Slot census_slots[] = {
    {Py_tp_traverse, (void *)census_traverse},
    {Py_tp_clear, (void *)census_clear},
    {0, nullptr},
};

NB_MODULE(_core, m) {
    m.doc() = "taskleak's native core: creation hook, interned stacks, task census.";
    init_callbacks();
    // Snapshots (and so censuses) may legitimately be alive at interpreter exit.
    nb::set_leak_warnings(false);
    m.attr("registry_add") = nb::steal(make_registry_add());
    m.attr("gc_phase") = nb::steal(make_gc_phase());
    m.attr("ChainingFactory") = nb::steal(make_chaining_factory_type());
    m.attr("FastCreateTask") = nb::steal(make_fast_create_task_type());
    m.attr("FRAME_WALK") = cpython::frame_walk_mode();

    m.def(
        "configure_registry",
        [](nb::handle data, nb::handle pending, nb::handle commit, nb::handle remove, nb::handle current_tasks) {
            Tracker &t = tracker();
            Py_XSETREF(t.registry_data, Py_NewRef(data.ptr()));
            Py_XSETREF(t.registry_pending, Py_NewRef(pending.ptr()));
            Py_XSETREF(t.registry_commit, Py_NewRef(commit.ptr()));
            Py_XSETREF(t.registry_remove, Py_NewRef(remove.ptr()));
            Py_XSETREF(t.current_tasks, Py_NewRef(current_tasks.ptr()));
        },
        "data"_a, "pending"_a, "commit"_a, "remove"_a, "current_tasks"_a);
    m.def(
        "set_current_tasks", [](nb::handle d) { Py_XSETREF(tracker().current_tasks, Py_NewRef(d.ptr())); },
        "current_tasks"_a);
    m.def(
        "set_current_task_getter",
        [](nb::handle fn) {
            Tracker &t = tracker();
            Py_CLEAR(t.current_tasks);
            Py_XSETREF(t.current_task_fn, fn.is_none() ? nullptr : Py_NewRef(fn.ptr()));
        },
        "fn"_a.none(), "Where asyncio has no current-task dict (3.14+): a callable(loop) -> task.");
    m.def(
        "set_loop_callback",
        [](nb::handle fn) {
            Tracker &t = tracker();
            Py_XSETREF(t.on_new_loop, fn.is_none() ? nullptr : Py_NewRef(fn.ptr()));
            Py_CLEAR(t.last_loop);
            t.last_loop_raw = nullptr;
        },
        "fn"_a.none());
    m.def(
        "enable",
        [](int depth) {
            Tracker &t = tracker();
            t.depth = depth < 1 ? 1 : depth > 128 ? 128 : depth;
            t.enabled = true;
        },
        "depth"_a);
    m.def("disable", []() { tracker().enabled = false; });
    m.def(
        "_coro_address",
        [](nb::handle task) {
            cpython::listed_task_type();  // learns the offsets on first use
            return (uintptr_t)cpython::coro_address(task.ptr());
        },
        "task"_a, "Tests only: the coroutine address a census prefetches for `task` (0: none).");
    m.def("release_census_spares", &TaskCensus::release_spares,
          "Free the buffers kept from censuses gone for the next one (uninstall()).");
    m.def("is_enabled", []() { return tracker().enabled; });
    m.def(
        "track_task", [](nb::handle task) { return track_task(task.ptr(), nullptr); }, "task"_a,
        "Record the creation of `task` (factory path). Call right after creating it.");
    m.def("creation_info", &creation_info, "task"_a,
          "(serial, parent_serial, created_ns, thread_ident, frames|None, dropped, scope) or None.");
    m.def(
        "set_scope_var",
        [](nb::handle var) { Py_XSETREF(tracker().scope_var, var.is_none() ? nullptr : Py_NewRef(var.ptr())); },
        "var"_a.none());
    m.def("set_ambient_scope", [](int id) { tracker().ambient_scope = (uint16_t)(id & 0xFFFF); }, "id"_a);
    m.def(
        "set_harness_task", [](nb::handle task) { tracker().harness_task = task.is_none() ? nullptr : task.ptr(); },
        "task"_a.none(), "A test runner's task whose new tasks get the ambient scope; the caller keeps it alive.");
    m.def(
        "scope_tasks",
        [](int id) {
            // Live tasks charged to scope `id`.
            nb::list out;
            tracker().tasks.for_each([&](const CreationRecord &r) {
                if (r.scope != (uint16_t)id) return;
                PyObject *task = record_task(r);
                if (task != nullptr) out.append(nb::borrow(task));
            });
            return out;
        },
        "id"_a);
    m.def("stats", &stats);
    m.def(
        "hook_task_finalizer",
        [](nb::handle type) {
            if (!PyType_Check(type.ptr())) throw nb::type_error("hook_task_finalizer expects a type");
            return hook_task_finalizer((PyTypeObject *)type.ptr());
        },
        "type"_a, "Learn of the deaths of tasks of `type` from its tp_finalize (no weakref per task).");
    m.def(
        "calibrate_running_task",
        [](nb::handle loop, nb::handle task) { return cpython::running_task_calibrate(loop.ptr(), task.ptr()); },
        "loop"_a, "task"_a,
        "Call from inside `task` running on `loop` (twice, two probes): learns where "
        "the thread state keeps the running task. True once confirmed.");
    m.def(
        "set_qualname_resolver",
        [](nb::handle fn) { Py_XSETREF(qualname_resolver, fn.is_none() ? nullptr : Py_NewRef(fn.ptr())); },
        "fn"_a.none());
    m.def(
        "buried_chain",
        [](nb::handle task) -> nb::object {
            uint32_t chain = StackTable::NONE;
            if (tracker().tasks.find_buried(task.ptr(), &chain) == nullptr) return nb::none();
            return stack_frames(tracker().stacks, chain);
        },
        "task"_a, "Await chain captured when the collector took `task`, or None.");
    m.def(
        "live_tasks",
        [](nb::handle weakref_set, nb::handle strong_sets) {
            // Union of: the registry's set of weakrefs, any strong containers of
            // tasks (eager set, current-task dict values), and tracked records.
            std::unordered_set<PyObject *> seen;
            nb::list out;
            auto add = [&](PyObject *task) {
                if (task != nullptr && task != Py_None && seen.insert(task).second) out.append(nb::borrow(task));
            };
            if (!weakref_set.is_none()) {
                PyObject *items = PySequence_List(weakref_set.ptr());  // copy: callbacks may mutate the set
                if (items == nullptr) throw nb::python_error();
                for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); ++i) {
                    PyObject *wr = PyList_GET_ITEM(items, i);
                    if (PyWeakref_Check(wr)) add(cpython::weakref_peek(wr));
                }
                Py_DECREF(items);
            }
            for (nb::handle container : strong_sets) {
                PyObject *items = PySequence_List(container.ptr());
                if (items == nullptr) throw nb::python_error();
                for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); ++i) add(PyList_GET_ITEM(items, i));
                Py_DECREF(items);
            }
            tracker().tasks.for_each([&](const CreationRecord &r) { add(record_task(r)); });
            return out;
        },
        "weakref_set"_a.none(), "strong_sets"_a);
    m.def(
        "tracked_tasks",
        []() {
            nb::list out;
            tracker().tasks.for_each([&](const CreationRecord &r) {
                PyObject *task = record_task(r);  // borrowed; nullptr once dead
                if (task != nullptr) out.append(nb::borrow(task));
            });
            return out;
        },
        "Every live task that has a creation record.");
    m.def("set_stack_limit", [](size_t n) { tracker().stacks.set_capacity_limit(n); }, "limit"_a);
    m.def("monotonic_ns", &monotonic_ns);
    m.def(
        "capture_stack",
        [](int depth) {
            cpython::CodeLoc buf[128];
            int n = cpython::capture_thread_stack(buf, depth < 128 ? depth : 128);
            return render(buf, n);
        },
        "depth"_a = 32, "The calling thread's stack as the hook sees it, innermost first.");
    m.def(
        "await_chain",
        [](nb::handle coro, int depth) {
            std::vector<cpython::CodeLoc> buf((size_t)(depth > 0 ? depth : 1));
            PyObject *leaf = nullptr;
            int n = walk_await_chain(coro.ptr(), buf.data(), depth, &leaf);
            nb::object leaf_obj = leaf ? nb::steal(leaf) : nb::none();
            return nb::make_tuple(render(buf.data(), n), leaf_obj);
        },
        "coro"_a, "depth"_a = 64);
    m.def(
        "generator_local",
        [](nb::handle gen, const char *name) -> nb::object {
            PyObject *v = cpython::generator_local(gen.ptr(), name);
            return v ? nb::borrow(v) : nb::none();
        },
        "gen"_a, "name"_a);

    nb::class_<TaskCensus>(m, "Census", nb::type_slots(census_slots))
        .def("__len__", [](const TaskCensus &c) { return c.rows.size(); })
        .def_ro("registry_counted", &TaskCensus::registry_counted,
                "Whether the registry's entries were counted against the records instead of read.")
        .def(
            "row",
            [](const TaskCensus &c, size_t i) {
                if (i >= c.rows.size()) throw nb::index_error();
                const CensusRow &r = c.rows[i];
                return nb::make_tuple(nb::borrow(r.task), (int)r.state, r.serial, r.parent_serial,
                                      r.created_ns < 0 ? nb::object(nb::none()) : nb::object(nb::int_(r.created_ns)),
                                      r.thread,
                                      r.creation == StackTable::NONE      ? -1
                                      : r.creation == StackTable::DROPPED ? -2
                                                                          : (int64_t)r.creation,
                                      r.chain == StackTable::NONE ? -1 : (int64_t)r.chain,
                                      r.waiter ? nb::borrow(r.waiter) : nb::object(nb::none()),
                                      r.leaf ? nb::borrow(r.leaf) : nb::object(nb::none()));
            },
            "i"_a, "(task, state, serial, parent_serial, created_ns|None, thread, creation_id, chain_id, waiter, leaf)")
        .def(
            "column",
            [](const TaskCensus &c, const std::string &name) {
                // Whole columns as lists of ints: reports aggregate over 100k
                // tasks without building a tuple per task. The field is chosen
                // once, not per row.
                int64_t (*get)(const CensusRow &) = nullptr;
                if (name == "state") get = [](const CensusRow &r) -> int64_t { return (int)r.state; };
                else if (name == "serial") get = [](const CensusRow &r) -> int64_t { return r.serial; };
                else if (name == "parent") get = [](const CensusRow &r) -> int64_t { return r.parent_serial; };
                else if (name == "created") get = [](const CensusRow &r) -> int64_t { return r.created_ns; };
                else if (name == "scope") get = [](const CensusRow &r) -> int64_t { return r.scope; };
                else if (name == "identity")
                    get = [](const CensusRow &r) -> int64_t { return (int64_t)(uintptr_t)r.task; };
                else if (name == "waiter_type")
                    get = [](const CensusRow &r) -> int64_t { return (int64_t)(uintptr_t)r.waiter_type; };
                else throw nb::value_error("unknown column");
                PyObject *out = PyList_New((Py_ssize_t)c.rows.size());
                if (out == nullptr) throw nb::python_error();
                nb::list list = nb::steal<nb::list>(out);
                for (size_t i = 0; i < c.rows.size(); ++i) {
                    PyObject *v = PyLong_FromLongLong(get(c.rows[i]));
                    if (v == nullptr) throw nb::python_error();
                    PyList_SET_ITEM(out, (Py_ssize_t)i, v);
                }
                return list;
            },
            "name"_a)
        .def(
            "summarize",
            [](const TaskCensus &c, nb::handle group, size_t k, size_t top) {
                std::vector<uint32_t> rows = census_rows(c, group);
                GroupSummary g = c.summarize(rows, k, top);
                nb::list oldest, untracked, parents;
                for (auto &[serial, row] : g.oldest) oldest.append(nb::make_tuple(serial, row));
                for (uint32_t row : g.untracked) untracked.append(row);
                for (auto &[serial, n] : g.parents) parents.append(nb::make_tuple(serial, n));
                return nb::make_tuple(g.births, g.min_created, g.max_created, oldest, untracked, parents,
                                      g.distinct_parents);
            },
            "group"_a, "k"_a, "top"_a,
            "(births, min_created, max_created, [(serial, row)] oldest k, [row] first k untracked, "
            "[(parent serial, count)] top, distinct parents)")
        .def(
            "state_counts",
            [](const TaskCensus &c, nb::handle group) {
                // (count, position of the first row) per state, over the rows
                // `group`, or every row in order for None (no 100,000-int list
                // to convert for a whole snapshot).
                nb::list out;
                if (group.is_none()) {
                    for (int s = 0; s < 4; ++s) out.append(nb::make_tuple(c.state_count[s], c.state_first[s]));
                    return out;
                }
                std::vector<uint32_t> rows = census_rows(c, group);
                int64_t count[4] = {0, 0, 0, 0}, first[4] = {-1, -1, -1, -1};
                for (size_t pos = 0; pos < rows.size(); ++pos) {
                    int s = (int)c.rows[rows[pos]].state & 3;
                    if (count[s]++ == 0) first[s] = (int64_t)pos;
                }
                for (int s = 0; s < 4; ++s) out.append(nb::make_tuple(count[s], first[s]));
                return out;
            },
            "group"_a.none())
        .def(
            "row_of_serial", [](const TaskCensus &c, uint32_t serial) { return c.row_of_serial(serial); }, "serial"_a)
        .def(
            "groups",
            [](const TaskCensus &c, nb::handle ints, size_t packed) {
                // Lists of row numbers. `ints`, if given, must be
                // list(range(len(census))): its int objects are shared
                // instead of making 100,000 new ones. Groups of at least
                // `packed` rows (0: none) come as bytes of native uint32
                // instead: a report reads a handful of a large group's rows.
                PyObject *shared = ints.is_none() ? nullptr : ints.ptr();
                if (shared != nullptr) {
                    if (!PyList_CheckExact(shared) || (size_t)PyList_GET_SIZE(shared) != c.rows.size())
                        throw nb::value_error("ints must be list(range(len(census)))");
                    for (size_t i = 0; i < c.rows.size(); i += std::max<size_t>(1, c.rows.size() / 8)) {
                        Py_ssize_t v = PyLong_AsSsize_t(PyList_GET_ITEM(shared, (Py_ssize_t)i));
                        if (v != (Py_ssize_t)i) {
                            PyErr_Clear();
                            throw nb::value_error("ints must be list(range(len(census)))");
                        }
                    }
                }
                std::vector<std::vector<uint32_t>> groups = c.groups();
                nb::list out;
                for (const std::vector<uint32_t> &g : groups) {
                    if (packed > 0 && g.size() >= packed) {
                        out.append(nb::bytes((const char *)g.data(), g.size() * sizeof(uint32_t)));
                        continue;
                    }
                    PyObject *lst = PyList_New((Py_ssize_t)g.size());
                    if (lst == nullptr) throw nb::python_error();
                    nb::object hold = nb::steal(lst);
                    for (size_t j = 0; j < g.size(); ++j) {
                        PyObject *v = shared != nullptr ? Py_NewRef(PyList_GET_ITEM(shared, (Py_ssize_t)g[j]))
                                                        : PyLong_FromUnsignedLong(g[j]);
                        if (v == nullptr) throw nb::python_error();
                        PyList_SET_ITEM(lst, (Py_ssize_t)j, v);
                    }
                    out.append(hold);
                }
                return out;
            },
            "ints"_a.none() = nb::none(), "packed"_a = 0)
        .def(
            "creation_frames", [](TaskCensus &, uint32_t id) { return stack_frames(tracker().stacks, id); }, "id"_a)
        .def("chain_frames", [](TaskCensus &c, uint32_t id) { return stack_frames(c.chains(), id); }, "id"_a);

    m.def(
        "census",
        [](nb::handle tasks, int chain_depth) {
            auto *c = new TaskCensus();
            c->collect(tasks.ptr(), chain_depth);
            if (PyErr_Occurred()) {
                delete c;
                throw nb::python_error();
            }
            return c;
        },
        "tasks"_a, "chain_depth"_a = 64, nb::rv_policy::take_ownership);
    m.def(
        "census_live",
        [](nb::handle weakref_set, nb::handle strong_sets, int chain_depth, bool registry_untouched,
           nb::handle more_sets) {
            auto *c = new TaskCensus();
            if (!c->collect_live(weakref_set.ptr(), strong_sets.ptr(), more_sets.ptr(), chain_depth,
                                 registry_untouched)) {
                delete c;
                throw nb::python_error();
            }
            return c;
        },
        "weakref_set"_a.none(), "strong_sets"_a, "chain_depth"_a = 64, "registry_untouched"_a = false,
        "more_sets"_a.none() = nb::none(), nb::rv_policy::take_ownership,
        "census(live_tasks(weakref_set, strong_sets), chain_depth) in one pass, tracked tasks read from their "
        "records (rows in another order). registry_untouched: nothing but registry_add and its weakrefs' "
        "callbacks has changed the registry's set (its entries are then counted, not read, when they are "
        "all our records' weakrefs). more_sets: a callable returning more containers, called only when "
        "asyncio's own task lists (3.14+) cannot tell that the rows hold every live task already.");
    bind_graph(m);
    bind_heap(m);
    bind_holder_search(m);
    bind_monitor(m);
    bind_watchdog(m);
    bind_live(m);
}
