// Orphaned ("provably stuck") tasks, decided without running the collector.
//
// A pending task T parked on a Future W can only be woken by someone setting
// W. All pending tasks are checked together: G is the set of objects reachable
// from them through tp_traverse, not expanding into long-lived hubs (modules
// and their dicts, types, code, functions, contexts, event loops). For each
// member, the references it receives from inside G are counted, as the cyclic
// GC does; members with more references than that are held from outside G:
// they are the roots. T is orphaned when W cannot be reached from any root
// other than T itself: nothing but the task's own reference cycle reaches the
// Future it waits on, so nothing can ever resolve it. (An external reference
// to T does not count: holding a task does not wake it.)
//
// Marking is linear: first from the roots that are not tasks, then from each
// externally held task, remembering per object whether one task root reaches
// it (which one) or several.
//
// Whatever is not seen is treated as external, so every shortcut (hubs,
// objects without tp_traverse, the size cap) errs towards "not orphaned".
#pragma once
#include <Python.h>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace taskleak {

enum class Orphan : uint8_t {
    NotWaiting = 0,  // no Future to wait on: scheduled, running or done
    Reachable = 1,   // the Future is reachable from outside the task's subgraph
    Orphaned = 2,    // nothing outside the task's own references reaches it
    Unknown = 3,     // subgraph over the size cap, or the Future not found in it
};

struct OrphanResult {
    Orphan verdict = Orphan::NotWaiting;
    PyObject *root = nullptr;  // borrowed, Reachable only: the externally held object
    size_t examined = 0;       // objects in the analysed graph (all pending tasks)
};

// Pointer-keyed open-addressing map, cleared in O(1) by a generation stamp.
class PtrMap {
public:
    PtrMap() { resize(256); }
    void clear() {
        if (++gen_ == 0) {  // wrapped: really clear
            for (Slot &s : slots_) s.gen = 0;
            gen_ = 1;
        }
        count_ = 0;
    }
    // Value of `key`, or nullptr.
    uint32_t *find(PyObject *key);
    // Inserts (key, value) if absent; returns the stored value and whether it was new.
    uint32_t *insert(PyObject *key, uint32_t value, bool *inserted);
    size_t size() const { return count_; }
    // Room for `n` entries without growing.
    void reserve(size_t n) {
        size_t want = 256;
        while (want * 3 < n * 4) want *= 2;  // load <= 0.75
        if (want > slots_.size()) resize(want);
    }

private:
    struct Slot {
        PyObject *key;
        uint32_t gen;
        uint32_t value;
    };
    // Objects are 16-byte aligned and visited roughly in allocation order:
    // keeping nearby addresses in nearby slots keeps the table in cache.
    static size_t hash(PyObject *p) {
        uint64_t a = (uint64_t)(uintptr_t)p >> 4;
        return (size_t)(a ^ (a >> 23) * 0x9E3779B1u);
    }
    void resize(size_t n);
    std::vector<Slot> slots_;
    size_t mask_ = 0, count_ = 0;
    uint32_t gen_ = 1;
};

class OrphanAnalysis {
public:
    explicit OrphanAnalysis(size_t cap) : cap_(cap) {}
    // Never expanded: its references count as external.
    void add_hub(PyObject *o);
    // Instances of this type and its subclasses are hubs (event loops).
    void set_loop_base(PyTypeObject *type) { loop_base_ = type; }
    void reserve(size_t objects, size_t held) {
        members_.reserve(objects);
        held_.reserve(held);
    }
    // `n` references to `o` that taskleak itself holds (census rows): discounted.
    void add_held(PyObject *o, uint32_t n = 1);
    // Objects of this type are tasks: their own external references are not
    // held against them.
    void add_task_type(PyTypeObject *type);
    // Checks every (task, waiter) pair; waiter may be nullptr (not waiting).
    void run(const std::vector<std::pair<PyObject *, PyObject *>> &checks);
    const std::vector<OrphanResult> &results() const { return results_; }
    size_t graph_size() const { return objs_.size(); }

private:
    friend int orphan_visit(PyObject *o, void *arg);
    int on_edge(PyObject *o);
    bool is_hub(PyObject *o);
    bool add_member(PyObject *o, uint32_t *idx);
    void mark_from(uint32_t root, bool task_root);

    static constexpr uint32_t NONE = 0xFFFFFFFFu, MANY = 0xFFFFFFFEu;
    size_t cap_;
    bool overflow_ = false;
    PtrMap hubs_, members_;
    std::vector<PyObject *> held_;  // one entry per reference taskleak holds
    std::vector<PyTypeObject *> task_types_;
    PyTypeObject *loop_base_ = nullptr;
    // What each type's instances are to the walk, cached (few types are seen).
    enum class Kind : uint8_t { Member, Hub, MaybeHub, Skip };
    struct TypeSlot {
        PyTypeObject *type;
        Kind kind;
    };
    TypeSlot type_cache_[256] = {};
    Kind kind_of(PyTypeObject *t);
    std::vector<PyObject *> objs_;      // G, BFS order
    std::vector<uint32_t> indeg_;       // references from inside G
    std::vector<Py_ssize_t> refcnt_;    // reference counts when first seen
    std::vector<uint32_t> edge_start_;  // objs_[i]'s edges: edges_[edge_start_[i] .. edge_start_[i+1])
    std::vector<uint32_t> edges_;
    std::vector<uint32_t> origin_;      // non-task root that reaches it first, NONE
    std::vector<uint32_t> task_label_;  // the one task root reaching it, MANY, NONE
    std::vector<uint32_t> queue_;
    std::vector<OrphanResult> results_;
};

}  // namespace taskleak
