// The monitor's per-sample count of tracked tasks: how many are pending and
// how many are done but still referenced, in total and per group (creation
// stack x coroutine code). Unlike a snapshot it keeps nothing per task and
// renders nothing: it is what runs every few seconds in production.
//
// The pass walks the creation-record table by slot. Slots whose record did
// not change since the previous pass - nearly all of them at a steady state
// - need only their task's state read, and those reads run without the GIL;
// the rest may drop it between chunks (`max_hold_ns`). Tasks created or freed
// while the GIL is dropped may be missed or counted once more: the counts
// are a monitor's, not an audit's.
#pragma once
#include <Python.h>
#include <array>
#include <cstdint>
#include <vector>

namespace taskleak {

// Ages and lifetimes as half-octave buckets of milliseconds: bucket 0 is
// under 1 ms, bucket 1 + 2k + h starts at 2^k * (1 + h/2) ms; the last one
// holds everything from about 24 days on. Coarse on purpose: the monitor asks
// "older than many times the usual lifetime", never for an exact age.
constexpr int AGE_BUCKETS = 64;
using AgeHistogram = std::array<uint32_t, AGE_BUCKETS>;
int age_bucket(int64_t ms);

struct GroupTally {
    uint32_t stack;  // creation stack id (StackTable), NONE/DROPPED allowed
    PyObject *code;  // strong: the coroutine's code object, or its type
    uint32_t pending = 0;
    uint32_t done = 0;            // done at this pass and the previous one (see `finishing`)
    int64_t oldest_ns = 0;        // creation time of the oldest task in the group
    PyObject *example = nullptr;  // strong: taskleak's weakref to the oldest pending (else any) task
    bool example_pending = false;
    // Ages of the group's pending tasks at this pass; lifetimes of its tasks
    // seen pending at an earlier pass that finished (or were freed) since.
    // Empty when the group has none. Tasks born and gone between two passes
    // are never seen: lifetimes are of the longer-lived tasks, which is the
    // safe side for "older than the usual lifetime".
    AgeHistogram ages{};
    AgeHistogram lifetimes{};
    bool has_ages = false, has_lifetimes = false;
};

struct TaskTally {
    // `done`: done and still referenced at this pass and at the previous
    // one. `finishing`: done since the previous pass, possibly referenced
    // only by done callbacks queued on its loop: not (yet) retained.
    uint64_t live = 0, pending = 0, done = 0, finishing = 0;
    std::vector<GroupTally> groups;  // also groups with no live task left but lifetimes to report
    int64_t gil_ns = 0;              // GIL held by the pass, summed over its chunks
    int64_t max_hold_ns = 0;         // longest single hold
    int holds = 0;
    int64_t wall_ns = 0;
    int64_t read_ns = 0;            // the state reads without the GIL (the rest of wall_ns - gil_ns is waiting for it)
    uint64_t gone_during_read = 0;  // tasks freed between phase 1 and the GIL-free read of their state
    uint64_t generation = 0;        // changes when stack ids and code objects of groups may be reused
    ~TaskTally();
};

// Must be called with the GIL held; returns with it held. The state reads
// of tasks whose records did not change since the previous pass run with
// the GIL released (see TaskTable's watch); with max_hold_ns > 0 the GIL is
// also released between chunks of the rest. Passes of several monitors take
// turns. False, and nothing counted, if called from Python code that a pass
// in this thread runs (a Task subclass's attribute).
//
// `stale_after`: (stack id, code object, milliseconds) of groups whose tasks
// that old are stale (the monitor's thresholds): such a group's example is
// its newest stale task, the kind that made its stale count rise, rather
// than its oldest pending one (a keep-alive connection beside hung requests).
struct StaleAfter {
    uint32_t stack;
    PyObject *code;  // borrowed: the caller holds it over the call
    int64_t ms;
};
bool tally_tasks(TaskTally &out, int64_t max_hold_ns, const std::vector<StaleAfter> &stale_after = {});

// In a forked child: a pass the parent's sampler thread had in progress
// will never finish there.
void tally_after_fork();

// Which implementation reads task state: "fields" (offsets found by probing
// real tasks at start-up) or "attributes" (getattr, any Task class).
const char *tally_mode();

// Tests only: sleep this long inside each 64-slot word of the count's
// GIL-free read (0: never).
void set_tally_read_pause(int64_t ns);

// Learn where _asyncio.Task keeps its state and coroutine, from tasks whose
// state the caller knows. Returns false (and keeps the getattr path) if the
// layout is not unambiguous.
bool probe_task_fields(PyObject *pending1, PyObject *pending2, PyObject *done, PyObject *cancelled, PyObject *coro1,
                       PyObject *coro2);

}  // namespace taskleak
