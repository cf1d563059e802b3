// Interned stacks: identical (code, offset) sequences are stored once and
// shared by id, with a reference count per stack (tracemalloc's traceback
// table, plus removal). Code objects are held strongly while a stack exists so
// the pointers stay valid until the report turns them into file:line.
#pragma once
#include "cpython/frames.hpp"
#include <cstddef>
#include <cstdint>
#include <vector>

namespace taskleak {

using cpython::CodeLoc;

class StackTable {
public:
    static constexpr uint32_t NONE = 0xFFFFFFFFu;     // no stack captured
    static constexpr uint32_t DROPPED = 0xFFFFFFFEu;  // table was full

    explicit StackTable(size_t cap) : cap_(cap) {}
    ~StackTable();
    StackTable(const StackTable &) = delete;
    StackTable &operator=(const StackTable &) = delete;

    // Returns the id of the stack (one new reference), DROPPED when full.
    uint32_t intern(const CodeLoc *frames, int n);
    void incref(uint32_t id);
    void decref(uint32_t id);

    // nullptr for NONE/DROPPED/unknown ids.
    const CodeLoc *frames(uint32_t id, int *n) const;

    size_t size() const { return live_; }
    size_t capacity_limit() const { return cap_; }
    void set_capacity_limit(size_t cap) { cap_ = cap; }
    uint64_t drops() const { return drops_; }
    size_t bytes() const;

private:
    struct Entry {
        uint64_t hash;
        uint32_t refcnt;
        int32_t n;
        CodeLoc frames[1];
    };
    static uint64_t hash_frames(const CodeLoc *frames, int n);
    size_t find_slot(uint64_t h, const CodeLoc *frames, int n) const;
    void grow_index();
    void erase_from_index(uint32_t id);

    size_t cap_;
    size_t live_ = 0;
    size_t entry_bytes_ = 0;
    uint64_t drops_ = 0;
    std::vector<Entry *> entries_;  // id -> entry (nullptr when free)
    std::vector<uint32_t> free_ids_;
    std::vector<uint32_t> index_;  // open addressing: id+1, 0 = empty
};

}  // namespace taskleak
