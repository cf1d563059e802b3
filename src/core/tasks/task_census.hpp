// One pass over a list of tasks, collecting for each its state, creation
// record and await chain, and grouping identical (creation site, suspension
// chain, state, wait-target type) together: the raw material of a Snapshot.
#pragma once
#include "tracking/stack_intern.hpp"
#include "tracking/task_table.hpp"
#include <Python.h>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

namespace taskleak {

enum class TaskState : uint8_t { Pending = 0, Done = 1, Cancelled = 2, Failed = 3 };

struct CensusRow {
    PyObject *task;             // strong
    PyObject *waiter;           // strong or nullptr: task._fut_waiter
    PyObject *leaf;             // strong or nullptr: innermost awaited object
    PyTypeObject *waiter_type;  // Py_TYPE(waiter), kept so grouping does not read every waiter again
    int64_t created_ns;         // -1 if unknown (created before install)
    unsigned long thread;       // creating thread ident, 0 if unknown
    uint32_t serial;            // 0 if untracked
    uint32_t parent_serial;
    uint32_t creation;  // id in the global stack table, NONE if unknown
    uint32_t chain;     // id in the census' own chain table
    uint16_t scope;     // check() scope the task is charged to
    TaskState state;
};

// What a grouped report shows of one group, aggregated natively: a group can
// hold 100,000 rows and the report shows a handful of them.
struct GroupSummary {
    uint32_t births = 0;      // rows with a known creation time
    int64_t min_created = 0;  // over those rows (0 when births == 0)
    int64_t max_created = 0;
    std::vector<std::pair<uint32_t, uint32_t>> oldest;   // (serial, row): the k lowest non-zero serials, ascending
    std::vector<uint32_t> untracked;                     // the first k rows of serial 0, in group order
    std::vector<std::pair<uint32_t, uint32_t>> parents;  // (parent serial, count), most common first
    uint32_t distinct_parents = 0;                       // non-zero parent serials
};

class TaskCensus {
public:
    TaskCensus();
    ~TaskCensus();
    // Every census alive in the process (the references they hold are
    // discounted by the orphan check).
    static const std::vector<TaskCensus *> &live();
    // Bytes of the buffers kept from censuses gone for the next census (see
    // task_census.cpp).
    static size_t spare_bytes();
    // Frees them (uninstall(): a service that stops tracking gets its
    // memory back; a later census only allocates afresh).
    static void release_spares();
    void collect(PyObject *task_list, int chain_depth);
    // Every task the tracker has a creation record for (in table order, read
    // from the records: no lookup per task), then, once each, the tasks of
    // `weakref_set` (a set of weakrefs, or None) and of the containers in
    // `strong_sets` that it has no live record for. The same rows, in another
    // order, as collect() over tracking.live_tasks(). `more_sets` (None, or
    // a callable returning more containers) is called only when asyncio's
    // task lists (3.14+) cannot tell that the rows hold every task already.
    // False with a Python error set on failure.
    bool collect_live(PyObject *weakref_set, PyObject *strong_sets, PyObject *more_sets, int chain_depth,
                      bool registry_untouched = false);
    std::vector<CensusRow> rows;
    // collect_live: the registry's entries were counted against our records
    // instead of read (see there).
    bool registry_counted = false;
    // Per state, over every row: how many, and the first row's position (-1:
    // none). Counted as read_tasks sets each state, where the row is in
    // cache anyway: a report's state summary reads no row again.
    int64_t state_count[4] = {0, 0, 0, 0};
    int64_t state_first[4] = {-1, -1, -1, -1};
    // Groups of row indices, largest first.
    std::vector<std::vector<uint32_t>> groups() const;
    StackTable &chains() { return chains_; }
    // Aggregates of the rows `group` (each < rows.size()). Parents tie on
    // count in order of first appearance, as collections.Counter does.
    GroupSummary summarize(const std::vector<uint32_t> &group, size_t k, size_t top) const;
    // The row of the task with creation number `serial` (non-zero), -1 if none.
    int64_t row_of_serial(uint32_t serial) const;

private:
    // Whether asyncio's task lists (3.14+) hold no task but those of the
    // rows collect_live made (`held`: whether a task has a row); false when
    // they cannot be read.
    bool lists_cover(const std::function<bool(PyObject *)> &held) const;
    PyTypeObject *listed_type_ = nullptr;  // collect_live: the type of listed tasks, when they are read
    // The node before each listed row's task, where it is not the node of
    // the previous listed row's task (see cpython::lists_hold_only).
    std::vector<const void *> unchecked_before_;
    const void *last_listed_ = nullptr;  // the node of the last listed row's task
    // Appends a row for `task` (borrowed; the row takes a reference) with
    // `rec`'s fields, or none if rec is nullptr.
    void add_row(PyObject *task, const CreationRecord *rec);
    void second_record(size_t from, size_t to, PyObject *task);
    // The state, waiter and await chain of rows[first...], whose tasks and
    // creation records are filled in.
    void read_tasks(size_t first, int chain_depth);
    StackTable chains_;
    // What groups rows: creation stack, chain, wait-target type and state.
    struct GroupKey {
        uint32_t creation, chain;
        PyTypeObject *waiter_type;
        TaskState state;
        bool operator==(const GroupKey &o) const {
            return creation == o.creation && chain == o.chain && waiter_type == o.waiter_type && state == o.state;
        }
    };
    struct GroupKeyHash {
        size_t operator()(const GroupKey &k) const {
            uint64_t h = ((uint64_t)k.creation << 32) ^ k.chain;
            h ^= (uint64_t)(uintptr_t)k.waiter_type * 0x9E3779B97F4A7C15ull;
            h ^= (uint64_t)k.state << 7;
            return (size_t)(h * 0xFF51AFD7ED558CCDull >> 17);
        }
    };
    // Each row's group, numbered in order of first appearance, given as
    // read_tasks reads the row (see groups()).
    void assign_group(size_t i);
    std::vector<uint32_t> group_of_;
    std::unordered_map<GroupKey, uint32_t, GroupKeyHash> group_ids_;
    GroupKey last_key_{};  // the key of group_of_.back()
};

}  // namespace taskleak
