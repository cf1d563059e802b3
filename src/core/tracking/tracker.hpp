// Process-wide tracking state shared by the creation hook, the census and the
// bindings. Every access happens with the GIL held (3.10-3.13 builds with a
// GIL; free-threaded builds are refused at import by the Python package).
#pragma once
#include "tracking/stack_intern.hpp"
#include "tracking/task_table.hpp"
#include <Python.h>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace taskleak {

struct Tracker {
    StackTable stacks{50000};
    TaskTable tasks;
    int depth = 32;
    bool enabled = false;
    uint32_t next_serial = 1;
    int in_gc = 0;
    uint64_t tracked_total = 0;
    uint64_t hook_errors = 0;

    // Registry mode: the asyncio WeakSet whose `add` we replace.
    PyObject *registry_data = nullptr;     // WeakSet.data (a set)
    PyObject *registry_pending = nullptr;  // WeakSet._pending_removals (a list)
    PyObject *registry_commit = nullptr;   // WeakSet._commit_removals
    PyObject *registry_remove = nullptr;   // WeakSet._remove (weakref callback)
    PyObject *current_tasks = nullptr;     // loop -> current task (dict), 3.10-3.13
    PyObject *current_task_fn = nullptr;   // _asyncio.current_task(loop), where there is no dict
    PyObject *on_new_loop = nullptr;       // Python callable(loop)
    PyObject *last_loop = nullptr;         // weakref to the loop seen last
    PyObject *last_loop_raw = nullptr;     // its address while it lives (cleared by the weakref's callback)
    PyObject *loop_death_cb = nullptr;

    // The creating task seen last and what its record said. Cleared when a
    // record for that address is made or dropped, so a new task at a reused
    // address is never mistaken for it.
    PyObject *parent_task = nullptr;
    uint32_t parent_serial = 0;
    uint16_t parent_scope = 0;
    bool parent_tracked = false;

    uint64_t memo_hits = 0;
    int calibrations_left = 16;  // lazy running-task calibrations (3.14+)

    // Death without a weakref (factory mode, see task_finalized in
    // creation_hook.cpp): records of tasks whose type finalizes through our
    // hook are keyed by the task itself.
    PyTypeObject *finalize_type = nullptr;    // the task type hooked (a strong ref)
    destructor finalize_orig = nullptr;       // its tp_finalize before ours
    destructor coro_finalize_orig = nullptr;  // PyCoro_Type's, before ours
    uint64_t finalize_keyed = 0;              // records made that way
    // Await chains of suspended coroutines the collector finalised in the
    // current pass (interned stack ids), for tasks finalised after them.
    std::unordered_map<PyObject *, uint32_t> gc_coro_chains;

    // check() scopes: see scope_of_new_task in creation_hook.cpp.
    PyObject *scope_var = nullptr;  // contextvars.ContextVar[int]
    uint16_t ambient_scope = 0;
    PyObject *harness_task = nullptr;  // borrowed address; the plugin keeps it alive while set

    // Our callables, created once.
    PyObject *registry_death_cb = nullptr;
    PyObject *factory_death_cb = nullptr;

    std::vector<unsigned long> threads{0};  // index 0 = unknown
    uint16_t last_thread = 0;
    PyThreadState *last_tstate = nullptr;  // thread state whose index is last_thread

    // The stack captured last and its interned id (one reference held here,
    // which keeps the memo's code objects alive): a task created from the
    // same place as the previous one costs a frame-by-frame comparison only.
    cpython::StackMemo memo;
    uint32_t memo_stack = StackTable::NONE;
};

// The one Tracker, made when the module is loaded (before any hook can run)
// and never destroyed: weakref callbacks may still fire during interpreter
// teardown, after static destructors would have run. An inline read, not a
// function-local static: the hook asks for it several times per task.
extern Tracker *const g_tracker;
inline Tracker &tracker() { return *g_tracker; }

// The creation hook proper: captures the record for `task`, whose weakref is
// `ref`. Never raises; failures are counted in hook_errors.
// `ref` is the key of the record (our weakref to the task).
void record_creation(PyObject *task, PyObject *ref, PyObject *loop);

// The chaining factory's hook: records `task`, just created on `loop` (the
// factory's own argument). Never raises.
bool track_task(PyObject *task, PyObject *loop);

// The record of a live (or, during a GC pass, just-collected) task.
const CreationRecord *lookup_record(PyObject *task);

// The live task of a record (borrowed), or nullptr once it died. During a
// collection, records keyed by the task itself are skipped: the task may be
// unreachable garbage the collector is finalising.
PyObject *record_task(const CreationRecord &r);

// Chain taskleak's death notice into `type`'s tp_finalize (the task type the
// factory creates) and coroutines' (for await chains of tasks the collector
// takes). False (nothing changed) if the type has no finalizer or another
// type is already hooked.
bool hook_task_finalizer(PyTypeObject *type);

int64_t monotonic_ns();

}  // namespace taskleak
