// A reverse reference index of the GC-tracked heap, built in one walk: every
// tracked object gets a node (its slot in an address table) and, in CSR form,
// the list of tracked objects that refer to it. Queries search backwards from
// an object to the roots the caller names.
//
// The index is a snapshot of *addresses*: it owns no reference to any heap
// object, so building it changes no object's lifetime. Objects may die and
// addresses be reused after the build; a query therefore never dereferences
// an indexed address it has not proven alive. Every reported path is checked
// top-down against the live heap: its root is alive (the caller holds it, or
// a weak reference to a class says so) and each holder's tp_traverse is asked
// whether it still refers to the next object, which proves that one alive in
// turn. Stale parts of the index can only hide paths, never invent them.
#pragma once
#include "heap/ptr_table.hpp"
#include <Python.h>
#include <cstdint>
#include <vector>

namespace taskleak {

struct HolderChain {
    int root = -1;                 // index into the caller's roots, or one of the kinds below
    std::vector<PyObject *> objs;  // strong refs: root object ... target
};

class HeapIndex {
public:
    static constexpr int ROOT_CLASS = -1;     // objs[0] is a class (a type object)
    static constexpr int ROOT_UNROOTED = -2;  // objs[0] has no known holder at all

    HeapIndex() = default;
    HeapIndex(const HeapIndex &) = delete;
    HeapIndex &operator=(const HeapIndex &) = delete;
    ~HeapIndex();

    // One heap walk plus one tp_traverse per object. Raises MemoryError
    // (returns false, exception set) beyond `max_objects` tracked objects,
    // before allocating anything proportional to the heap but the walk list.
    bool build(size_t max_objects);

    // Up to `max_paths` shortest paths (at most `max_depth` references from
    // the root's object to `target`). `roots`: live objects that count as
    // roots (their position is HolderChain::root); `stops`: live objects the
    // search must not pass through (running frames, the caller's own
    // bookkeeping). Classes seen at build time are roots as well. False with
    // an exception set on failure.
    // live_seed: find the target's direct referrers with a live pass even if
    // its address is in the index (the indexed object may have died and the
    // address been reused by a new object).
    bool who_holds(PyObject *target, const std::vector<PyObject *> &roots, const std::vector<PyObject *> &stops,
                   int max_depth, int max_paths, std::vector<HolderChain> *out, bool *stale, bool live_seed = false);

    size_t objects() const { return nodes_; }
    size_t edges() const { return rev_src_.size(); }
    size_t bytes() const;
    double build_seconds() const { return build_s_; }

private:
    enum Flag : uint8_t { IS_TYPE = 1, RUNNING_GEN = 2 };

    bool validate(const std::vector<PyObject *> &chain) const;
    bool type_alive(PyObject *type) const;
    void clear();

    PtrTable table_;                 // address -> node (slot)
    std::vector<uint8_t> flags_;     // per slot
    std::vector<uint32_t> rev_off_;  // per slot + 1: CSR offsets into rev_src_
    std::vector<uint32_t> rev_src_;  // referrer slots
    // Classes can be roots long after the build: a weak reference per class
    // (nullptr for static types, which live as long as the interpreter).
    PtrTable type_table_;
    std::vector<PyObject *> type_refs_;  // by type_table_ slot
    // Query scratch, sized to the table once and reset via `touched_`.
    std::vector<uint32_t> parent_;
    std::vector<uint32_t> touched_;
    size_t nodes_ = 0;
    double build_s_ = 0;
};

}  // namespace taskleak
