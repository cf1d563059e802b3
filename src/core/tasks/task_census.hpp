// One pass over a list of tasks, collecting for each its state, creation
// record and await chain, and grouping identical (creation site, suspension
// chain, state, wait-target type) together: the raw material of a Snapshot.
#pragma once
#include "tracking/stack_intern.hpp"
#include <Python.h>
#include <cstdint>
#include <memory>
#include <vector>

namespace taskleak {

enum class TaskState : uint8_t { Pending = 0, Done = 1, Cancelled = 2, Failed = 3 };

struct CensusRow {
    PyObject *task;        // strong
    PyObject *waiter;      // strong or nullptr: task._fut_waiter
    PyObject *leaf;        // strong or nullptr: innermost awaited object
    int64_t created_ns;    // -1 if unknown (created before install)
    unsigned long thread;  // creating thread ident, 0 if unknown
    uint32_t serial;       // 0 if untracked
    uint32_t parent_serial;
    uint32_t creation;  // id in the global stack table, NONE if unknown
    uint32_t chain;     // id in the census' own chain table
    uint16_t scope;     // check() scope the task is charged to
    TaskState state;
};

class TaskCensus {
public:
    TaskCensus();
    ~TaskCensus();
    // Every census alive in the process (the references they hold are
    // discounted by the orphan check).
    static const std::vector<TaskCensus *> &live();
    void collect(PyObject *task_list, int chain_depth);
    std::vector<CensusRow> rows;
    // Groups of row indices, largest first.
    std::vector<std::vector<uint32_t>> groups() const;
    StackTable &chains() { return chains_; }

private:
    StackTable chains_;
};

}  // namespace taskleak
