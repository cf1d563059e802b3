// Open-addressing set of object addresses with linear probing. The slot an
// address lands in is its identity for the users (dense enough: load <= 1/2),
// so a lookup is one probe sequence and no second array read. Addresses only:
// nothing here dereferences or owns the objects.
#pragma once
#include <Python.h>
#include <cstdint>
#include <vector>

namespace taskleak {

class PtrTable {
public:
    static constexpr uint32_t NOT_FOUND = UINT32_MAX;

    // Room for `n` keys at load <= 1/2 without rehashing.
    void reset(size_t n) {
        size_t cap = 16;
        while (cap < 2 * n) cap <<= 1;
        keys_.assign(cap, nullptr);
        mask_ = cap - 1;
        size_ = 0;
    }
    size_t capacity() const { return keys_.size(); }
    size_t size() const { return size_; }
    size_t bytes() const { return keys_.capacity() * sizeof(PyObject *); }
    PyObject *key(uint32_t slot) const { return keys_[slot]; }

    uint32_t find(const void *p) const {
        if (keys_.empty()) return NOT_FOUND;
        for (size_t i = hash(p) & mask_;; i = (i + 1) & mask_) {
            PyObject *k = keys_[i];
            if (k == p) return (uint32_t)i;
            if (k == nullptr) return NOT_FOUND;
        }
    }
    // The slot of `p`, inserting it if absent; `*added` tells which. Grows
    // (and so renumbers slots) only past load 1/2: callers that keep slot
    // numbers size the table up front with reset().
    uint32_t insert(PyObject *p, bool *added = nullptr) {
        if (2 * (size_ + 1) > keys_.size()) grow();
        size_t i = hash(p) & mask_;
        for (; keys_[i] != nullptr; i = (i + 1) & mask_)
            if (keys_[i] == p) {
                if (added) *added = false;
                return (uint32_t)i;
            }
        keys_[i] = p;
        ++size_;
        if (added) *added = true;
        return (uint32_t)i;
    }

private:
    static size_t hash(const void *p) {
        // Objects are 16-byte aligned. The low 12 bits of the 16-byte unit
        // (a 64 KB window) are kept in order, and only the window number is
        // scrambled: objects allocated together (same pymalloc pool) land in
        // neighbouring slots, so walking the heap in allocation order and
        // looking up referents (usually near their referrer) touches the
        // table sequentially instead of one cache miss per object.
        uint64_t unit = (uint64_t)(uintptr_t)p >> 4;
        uint64_t window = (unit >> 12) * 0x9E3779B97F4A7C15ull;
        return (size_t)(((window ^ (window >> 29)) << 12) | (unit & 0xFFF));
    }
    void grow() {
        std::vector<PyObject *> old;
        old.swap(keys_);
        reset(old.empty() ? 8 : old.size());
        for (PyObject *k : old)
            if (k != nullptr) insert(k);
    }
    std::vector<PyObject *> keys_;
    size_t mask_ = 0;
    size_t size_ = 0;
};

}  // namespace taskleak
