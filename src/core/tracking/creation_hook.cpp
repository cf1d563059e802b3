// The creation hook. On 3.10-3.13 the C Task constructor registers every task
// with `asyncio.tasks._all_tasks.add(task)` (3.10/3.11) or
// `_scheduled_tasks.add(task)` (3.12/3.13). An instance attribute `add` on that
// WeakSet replaces the method lookup, so `registry_add` below sees every task
// (uvloop's too) without a task factory. It does the WeakSet's own work in C
// (which is cheaper than WeakSet.add in Python) and records the creation.
//
// The chaining task factory (Python, for interpreters where the probe fails)
// calls `track_task` instead.
#include "tracking/tracker.hpp"
#include "cpython/frames.hpp"
#include "cpython/running_task.hpp"
#include "cpython/weakref_list.hpp"
#include "tasks/await_chain.hpp"
#include <ctime>
#include <pythread.h>

namespace taskleak {

Tracker *const g_tracker = new Tracker();

int64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint16_t thread_index(Tracker &t) {
    unsigned long id = PyThread_get_thread_ident();
    if (t.threads[t.last_thread] == id) return t.last_thread;
    for (size_t i = 1; i < t.threads.size(); ++i)
        if (t.threads[i] == id) return t.last_thread = (uint16_t)i;
    if (t.threads.size() >= 0xFFFF) return 0;  // bounded: later threads are "unknown"
    t.threads.push_back(id);
    return t.last_thread = (uint16_t)(t.threads.size() - 1);
}

static PyObject *str_loop() {
    static PyObject *s = PyUnicode_InternFromString("_loop");
    return s;
}

// The task running on `loop` right now (borrowed; it stays alive while it
// runs), or nullptr.
static PyObject *current_task_of(Tracker &t, PyObject *loop) {
    if (loop == nullptr) return nullptr;
    if (t.current_tasks != nullptr) {
        PyObject *cur = PyDict_GetItemWithError(t.current_tasks, loop);  // borrowed
        if (cur == nullptr) PyErr_Clear();
        return cur;
    }
    if (t.current_task_fn == nullptr) return nullptr;
    // 3.14+ keeps the current task in the thread state: read it there when
    // the offsets were confirmed at install time, else ask _asyncio.
    bool known = false;
    PyObject *running = cpython::running_task_peek(loop, &known);
    if (known) return running;
    PyObject *cur = PyObject_CallOneArg(t.current_task_fn, loop);
    if (cur == nullptr) {
        PyErr_Clear();
        return nullptr;
    }
    Py_DECREF(cur);  // the loop's current task stays alive while it runs
    if (cur == Py_None) return nullptr;
    if (t.calibrations_left > 0) {
        // install() ran inside a loop and could not run its probes: learn
        // from the first creating tasks instead (two different ones must agree).
        t.calibrations_left--;
        if (cpython::running_task_calibrate(loop, cur)) t.calibrations_left = 0;
    }
    return cur;
}

// The creating task's serial and scope (0 when untracked), and the task
// itself (compared by address only). A loop creating many tasks from one
// task asks the record table once.
static bool parent_of(Tracker &t, PyObject *loop, uint32_t *serial, uint16_t *scope, PyObject **task_out) {
    PyObject *cur = current_task_of(t, loop);
    *task_out = cur;
    if (cur == nullptr) return false;
    if (cur != t.parent_task) {
        const CreationRecord *r = lookup_record(cur);
        t.parent_task = cur;
        t.parent_tracked = r != nullptr;
        t.parent_serial = r ? r->serial : 0;
        t.parent_scope = r ? r->scope : 0;
    }
    if (!t.parent_tracked) return false;
    *serial = t.parent_serial;
    *scope = t.parent_scope;
    return true;
}

// Which check() scope a new task is charged to (ownership, not timing):
// 1. a task created by the test runner's own task (anyio's runner task, which
//    runs the test body inside itself) is the ambient scope's;
// 2. the scope ContextVar, if it is set in the creating context (tasks and
//    loop callbacks inherit a copy of the context that created them, so a
//    server started by a fixture hands its connections' tasks to that
//    fixture's scope); an explicit 0 means "no scope" and stops here;
// 3. the creating task's scope, whatever it is (0 included: a background
//    task's children are that task's business, not the test's);
// 4. created from a loop callback with no scope in its context: nobody's
//    (it belongs to whoever set up the callback, who had no scope);
// 5. created from synchronous code (a runner starting the test coroutine):
//    the ambient scope the pytest plugin sets around a test.
static bool loop_running_here() {
    static PyObject *get_running = nullptr;
    if (get_running == nullptr) {
        PyObject *name = PyUnicode_FromString("asyncio.events");
        PyObject *mod = name ? PyImport_GetModule(name) : nullptr;
        Py_XDECREF(name);
        if (mod == nullptr) {
            PyErr_Clear();
            return false;
        }
        get_running = PyObject_GetAttrString(mod, "_get_running_loop");
        Py_DECREF(mod);
        if (get_running == nullptr) {
            PyErr_Clear();
            return false;
        }
    }
    PyObject *loop = PyObject_CallNoArgs(get_running);
    if (loop == nullptr) {
        PyErr_Clear();
        return false;
    }
    bool running = loop != Py_None;
    Py_DECREF(loop);
    return running;
}

static uint16_t scope_of_new_task(Tracker &t, bool has_parent, uint16_t parent_scope, PyObject *parent_task) {
    if (parent_task != nullptr && parent_task == t.harness_task) return t.ambient_scope;
    if (t.scope_var != nullptr) {
        PyObject *v = nullptr;
        if (PyContextVar_Get(t.scope_var, nullptr, &v) == 0 && v != nullptr) {
            long id = PyLong_Check(v) ? PyLong_AsLong(v) : 0;
            Py_DECREF(v);
            PyErr_Clear();
            return id > 0 && id <= 0xFFFF ? (uint16_t)id : 0;
        }
        PyErr_Clear();
    }
    if (has_parent) return parent_scope;
    if (t.ambient_scope == 0 || loop_running_here()) return 0;
    return t.ambient_scope;
}

// First sight of a loop: let the Python side adopt it (exception handler
// chaining for loss events). Compared against the last loop seen, so a
// single-loop program pays one weakref deref per task.
static void notice_loop(Tracker &t, PyObject *loop) {
    if (t.on_new_loop == nullptr || loop == nullptr || loop == Py_None) return;
    if (loop == t.last_loop_raw) return;  // reset by loop_died when that loop goes
    PyObject *wr = PyWeakref_NewRef(loop, t.loop_death_cb);
    if (wr == nullptr) {
        PyErr_Clear();
        return;
    }
    Py_XSETREF(t.last_loop, wr);
    t.last_loop_raw = loop;
    PyObject *res = PyObject_CallOneArg(t.on_new_loop, loop);
    if (res == nullptr) {
        PyErr_Clear();
        t.hook_errors++;
    }
    Py_XDECREF(res);
}

// The creation time of a record: the coarse clock (a few ns, where the
// precise one costs ~25 ns on a VM's clock source). It is the same clock as
// monotonic_ns(), behind it by at most one tick (1-4 ms), so ages computed
// against monotonic_ns() are never negative.
static int64_t coarse_monotonic_ns() {
    timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0) return monotonic_ns();
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// The interned creation stack of the calling thread (one new reference).
// When it is frame for frame the stack captured last (a loop creating
// tasks), the memo answers without hashing or looking up the table.
static uint32_t capture_stack(Tracker &t) {
    cpython::CodeLoc frames[128];
    int depth = t.depth < 128 ? t.depth : 128;
    bool same = false;
    int n = cpython::capture_thread_stack_memo(frames, depth, &t.memo, &same);
    if (same && t.memo_stack < StackTable::DROPPED) {
        t.memo_hits++;
        t.stacks.incref(t.memo_stack);
        return t.memo_stack;
    }
    uint32_t id = n > 0 ? t.stacks.intern(frames, n) : StackTable::NONE;
    // Swap the memo's reference before releasing the old one: releasing may
    // free code objects, whose weakref callbacks could create tasks and
    // re-enter this function.
    uint32_t old = t.memo_stack;
    if (t.memo.valid && id < StackTable::DROPPED) {
        t.stacks.incref(id);
        t.memo_stack = id;
    } else {
        t.memo.valid = false;
        t.memo_stack = StackTable::NONE;
    }
    if (old < StackTable::DROPPED) t.stacks.decref(old);
    return id;
}

void record_creation(PyObject *task, PyObject *ref, PyObject *loop) {
    Tracker &t = tracker();
    // The hook runs inside Task.__init__: whatever we do must leave the
    // caller's exception state exactly as it was. The indicator is normally
    // clear here (C code calls no API with an error set), so it is saved only
    // when set: PyErr_Fetch/Restore on every task cost ~1% of a create+complete.
    PyObject *et = nullptr, *ev = nullptr, *etb = nullptr;
    bool saved = PyErr_Occurred() != nullptr;
    if (saved) PyErr_Fetch(&et, &ev, &etb);

    CreationRecord rec;
    rec.ref = ref;
    rec.task = task;
    rec.created_ns = coarse_monotonic_ns();
    rec.stack = capture_stack(t);
    rec.serial = t.next_serial++;
    if (t.next_serial == 0) t.next_serial = 1;
    uint32_t parent_serial = 0;
    uint16_t parent_scope = 0;
    PyObject *parent_task = nullptr;
    bool has_parent = parent_of(t, loop, &parent_serial, &parent_scope, &parent_task);
    rec.parent_serial = parent_serial;
    rec.scope = scope_of_new_task(t, has_parent, parent_scope, parent_task);
    rec.thread = thread_index(t);
    if (task == t.parent_task) t.parent_task = nullptr;  // a new task at that address
    t.tasks.insert(rec);
    t.tracked_total++;
    notice_loop(t, loop);

    if (PyErr_Occurred()) {
        PyErr_Clear();
        t.hook_errors++;
    }
    if (saved) PyErr_Restore(et, ev, etb);
}

const CreationRecord *lookup_record(PyObject *task) {
    Tracker &t = tracker();
    if (t.finalize_keyed != 0) {
        const CreationRecord *r = t.tasks.find(task);  // keyed by the task itself
        if (r != nullptr) return r;
    }
    PyObject *ref = nullptr;
    if (t.registry_death_cb) ref = cpython::find_weakref_with_callback(task, t.registry_death_cb);
    if (ref == nullptr && t.factory_death_cb) ref = cpython::find_weakref_with_callback(task, t.factory_death_cb);
    if (ref != nullptr) {
        const CreationRecord *r = t.tasks.find(ref);
        if (r) return r;
    }
    return t.tasks.find_buried(task);
}

// The await chain of a task the collector is about to finalise. Weakref
// callbacks run before any finalizer, so the task and its coroutine are still
// intact here; reading attributes does not mutate them.
static uint32_t chain_of_dying(Tracker &t, PyObject *task) {
    static PyObject *state = PyUnicode_InternFromString("_state");
    static PyObject *coro_attr = PyUnicode_InternFromString("_coro");
    PyObject *st = PyObject_GetAttr(task, state);
    bool pending = st && PyUnicode_Check(st) && PyUnicode_CompareWithASCIIString(st, "PENDING") == 0;
    Py_XDECREF(st);
    uint32_t id = StackTable::NONE;
    if (pending) {
        PyObject *coro = PyObject_GetAttr(task, coro_attr);
        if (coro != nullptr) {
            cpython::CodeLoc frames[64];
            PyObject *leaf = nullptr;
            int n = walk_await_chain(coro, frames, 64, &leaf);
            Py_XDECREF(leaf);
            if (n > 0) {
                id = t.stacks.intern(frames, n);
            } else {
                // Closed already: the collector finalised the coroutine first
                // (see coro_finalized), which kept its chain.
                auto it = t.gc_coro_chains.find(coro);
                if (it != t.gc_coro_chains.end()) {
                    id = it->second;
                    t.stacks.incref(id);
                }
            }
            Py_DECREF(coro);
        }
    }
    PyErr_Clear();
    return id;
}

static bool forget(Tracker &t, PyObject *ref) {
    CreationRecord rec;
    if (!t.tasks.remove(ref, &rec)) return false;
    if (rec.task == t.parent_task) t.parent_task = nullptr;
    if (t.in_gc) {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        t.tasks.bury(rec, chain_of_dying(t, rec.task));
        PyErr_Restore(et, ev, etb);
    } else if (rec.stack < StackTable::DROPPED) {
        t.stacks.decref(rec.stack);
    }
    return true;
}

PyObject *record_task(const CreationRecord &r) {
    if (r.ref == r.task) return tracker().in_gc ? nullptr : r.task;
    return cpython::weakref_peek(r.ref);
}

// ---- death through the task type's finalizer -------------------------------
//
// A weakref per task costs an allocation at creation (one more object for the
// collector to count) and a callback call with a tuple at death: ~4% of a
// create+complete on 3.14. Every task is finalised exactly once before its
// memory is freed (PEP 442: from its dealloc, or by the collector before it
// clears a cycle), so the type's tp_finalize is where a record can be dropped
// instead. The original finalizer runs first outside a collection: it is what
// reports "Task was destroyed but it is pending!", and the loss event asks
// for the record. Inside a collection the record is buried first with its
// await chain, as the weakref path does; but the collector may have
// finalised (closed) the coroutine before the task, so coroutines finalised
// in a pass leave their chain in gc_coro_chains until the pass ends.

// forget() keeping the caller's error indicator (a finalizer may run from a
// dealloc while an exception propagates, and releasing a stack may free code
// objects, whose weakref callbacks run Python code).
static void forget_keeping_error(Tracker &t, PyObject *ref) {
    if (PyErr_Occurred() == nullptr) {
        forget(t, ref);
        if (PyErr_Occurred()) PyErr_Clear();
        return;
    }
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    forget(t, ref);
    PyErr_Restore(et, ev, etb);
}

static void task_finalized(PyObject *task) {
    Tracker &t = tracker();
    bool mine = t.finalize_keyed != 0 && t.tasks.find(task) != nullptr;
    if (mine && t.in_gc) {
        forget_keeping_error(t, task);
        mine = false;
    }
    if (t.finalize_orig != nullptr) t.finalize_orig(task);
    if (mine) forget_keeping_error(t, task);
}

static void coro_finalized(PyObject *coro) {
    Tracker &t = tracker();
    // Only this interpreter's collections (subinterpreters share the type),
    // only while records keyed this way exist, only suspended coroutines.
    if (t.in_gc && t.finalize_keyed != 0 && t.tasks.size() != 0 &&
        PyInterpreterState_Get() == PyInterpreterState_Main() && t.gc_coro_chains.count(coro) == 0) {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        cpython::CodeLoc frames[64];
        PyObject *leaf = nullptr;
        int n = walk_await_chain(coro, frames, 64, &leaf);
        Py_XDECREF(leaf);
        if (n > 0) {
            uint32_t id = t.stacks.intern(frames, n);
            if (id < StackTable::DROPPED) t.gc_coro_chains.emplace(coro, id);
        }
        PyErr_Clear();
        PyErr_Restore(et, ev, etb);
    }
    if (t.coro_finalize_orig != nullptr) t.coro_finalize_orig(coro);
}

bool hook_task_finalizer(PyTypeObject *type) {
    Tracker &t = tracker();
    if (t.finalize_type == type) return true;
    if (t.finalize_type != nullptr || type->tp_finalize == nullptr || type->tp_finalize == task_finalized) return false;
    if (PyCoro_Type.tp_finalize == nullptr) return false;  // not the CPython we know
    if (PyCoro_Type.tp_finalize != coro_finalized) {
        t.coro_finalize_orig = PyCoro_Type.tp_finalize;
        PyCoro_Type.tp_finalize = coro_finalized;
    }
    t.finalize_orig = type->tp_finalize;
    type->tp_finalize = task_finalized;
    PyType_Modified(type);
    t.finalize_type = (PyTypeObject *)Py_NewRef((PyObject *)type);
    return true;  // for the life of the process: records keyed this way need it
}

// ---- callables handed to Python ------------------------------------------

static PyObject *registry_add(PyObject *, PyObject *task) {
    Tracker &t = tracker();
    if (t.registry_data == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "taskleak: registry hook used before configuration");
        return nullptr;
    }
    // WeakSet.add semantics: commit removals deferred during iteration, then
    // store a weakref whose callback discards it again.
    if (t.registry_pending && PyList_GET_SIZE(t.registry_pending) > 0) {
        PyObject *r = PyObject_CallNoArgs(t.registry_commit);
        if (r == nullptr) return nullptr;
        Py_DECREF(r);
    }
    PyObject *existing = cpython::find_weakref_with_callback(task, t.registry_death_cb);
    if (existing != nullptr) {
        if (PySet_Add(t.registry_data, existing) < 0) return nullptr;
        Py_RETURN_NONE;
    }
    PyObject *ref = PyWeakref_NewRef(task, t.registry_death_cb);
    if (ref == nullptr) return nullptr;
    if (PySet_Add(t.registry_data, ref) < 0) {
        Py_DECREF(ref);
        return nullptr;
    }
    if (t.enabled) {
        PyObject *loop = PyObject_GetAttr(task, str_loop());
        if (loop == nullptr) PyErr_Clear();
        // The record owns a reference too, released by registry_death: the
        // set's alone would leave the record's key dangling once something
        // takes the weakref out of the set while the task lives
        // (asyncio.tasks._unregister_task() discards it).
        record_creation(task, Py_NewRef(ref), loop);
        Py_XDECREF(loop);
    }
    Py_DECREF(ref);  // the set (and the record) own it now
    Py_RETURN_NONE;
}

static PyObject *registry_death(PyObject *, PyObject *ref) {
    Tracker &t = tracker();
    bool owned = forget(t, ref);
    PyObject *out = t.registry_remove != nullptr ? PyObject_CallOneArg(t.registry_remove, ref) : Py_NewRef(Py_None);
    // Last: this may free `ref`, which CPython does not touch after the
    // callback returns.
    if (owned) Py_DECREF(ref);
    return out;
}

static PyObject *factory_death(PyObject *, PyObject *ref) {
    Tracker &t = tracker();
    forget(t, ref);
    Py_DECREF(ref);  // the reference the record owned (see track_task)
    Py_RETURN_NONE;
}

// The weakref callback of the last loop seen: its address may be reused now.
static PyObject *loop_died(PyObject *, PyObject *ref) {
    Tracker &t = tracker();
    if (ref == t.last_loop) t.last_loop_raw = nullptr;
    Py_RETURN_NONE;
}

static PyObject *gc_phase(PyObject *, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || !PyUnicode_Check(args[0])) Py_RETURN_NONE;
    Tracker &t = tracker();
    if (PyUnicode_CompareWithASCIIString(args[0], "start") == 0) {
        t.in_gc = 1;
    } else {
        t.in_gc = 0;
        for (const TaskTable::Buried &b : t.tasks.take_graveyard()) {
            if (b.rec.stack < StackTable::DROPPED) t.stacks.decref(b.rec.stack);
            if (b.chain < StackTable::DROPPED) t.stacks.decref(b.chain);
        }
        std::vector<uint32_t> chains;
        for (auto &kv : t.gc_coro_chains) chains.push_back(kv.second);
        t.gc_coro_chains.clear();
        for (uint32_t id : chains) t.stacks.decref(id);
    }
    Py_RETURN_NONE;
}

// The docs start with CPython's "name(params)\n--\n\n" form, so that
// __text_signature__ and inspect.signature() see the parameters (the .pyi
// check in tests/test_core_stub.py compares them with _core.pyi).
static PyMethodDef registry_add_def = {"registry_add", (PyCFunction)registry_add, METH_O,
                                       "registry_add(task, /)\n--\n\n"
                                       "taskleak's replacement for WeakSet.add on asyncio's task registry."};
static PyMethodDef registry_death_def = {"registry_death", (PyCFunction)registry_death, METH_O, nullptr};
static PyMethodDef loop_died_def = {"loop_died", (PyCFunction)loop_died, METH_O, nullptr};
static PyMethodDef factory_death_def = {"factory_death", (PyCFunction)factory_death, METH_O, nullptr};
static PyMethodDef gc_phase_def = {"gc_phase", (PyCFunction)(void (*)(void))gc_phase, METH_FASTCALL,
                                   "gc_phase(phase, info, /)\n--\n\n"
                                   "taskleak's gc.callbacks entry (keeps records of tasks the collector "
                                   "is finalising until the pass ends)."};

PyObject *make_registry_add() { return PyCFunction_New(&registry_add_def, nullptr); }
PyObject *make_gc_phase() { return PyCFunction_New(&gc_phase_def, nullptr); }

void init_callbacks() {
    Tracker &t = tracker();
    if (t.registry_death_cb == nullptr) t.registry_death_cb = PyCFunction_New(&registry_death_def, nullptr);
    if (t.factory_death_cb == nullptr) t.factory_death_cb = PyCFunction_New(&factory_death_def, nullptr);
    if (t.loop_death_cb == nullptr) t.loop_death_cb = PyCFunction_New(&loop_died_def, nullptr);
}

// Factory path: the weakref is owned by the record and released by
// factory_death. Returns false if the task could not be tracked. `loop` is
// the loop the factory was called for (borrowed), or nullptr to read the
// task's own.
bool track_task(PyObject *task, PyObject *loop) {
    Tracker &t = tracker();
    if (!t.enabled) return false;
    if (cpython::find_weakref_with_callbacks(task, t.registry_death_cb, t.factory_death_cb))
        return true;  // already tracked (e.g. eager task seen by both paths)
    if (Py_TYPE(task)->tp_finalize == task_finalized) {
        // Its death reaches task_finalized: no weakref needed.
        if (t.tasks.find(task) != nullptr) return true;  // already tracked
        PyObject *own = loop;
        if (own == nullptr) {
            own = PyObject_GetAttr(task, str_loop());
            if (own == nullptr) PyErr_Clear();
        } else {
            Py_INCREF(own);
        }
        t.finalize_keyed++;
        record_creation(task, task, own);
        Py_XDECREF(own);
        return true;
    }
    PyObject *ref = PyWeakref_NewRef(task, t.factory_death_cb);
    if (ref == nullptr) {
        PyErr_Clear();
        return false;
    }
    if (loop != nullptr) {
        record_creation(task, ref, loop);
        return true;
    }
    PyObject *own = PyObject_GetAttr(task, str_loop());
    if (own == nullptr) PyErr_Clear();
    record_creation(task, ref, own);
    Py_XDECREF(own);
    return true;
}

}  // namespace taskleak
