#include "tracking/stack_intern.hpp"
#include <cstdlib>
#include <cstring>

namespace taskleak {

StackTable::~StackTable() {
    // Only reached at interpreter teardown for the global table, or when a
    // snapshot's private table dies; code references are released then.
    for (Entry *e : entries_) {
        if (e == nullptr) continue;
        if (Py_IsInitialized())
            for (int i = 0; i < e->n; ++i) Py_XDECREF((PyObject *)e->frames[i].code);
        std::free(e);
    }
}

uint64_t StackTable::hash_frames(const CodeLoc *frames, int n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    for (int i = 0; i < n; ++i) {
        uint64_t x = ((uint64_t)(uintptr_t)frames[i].code >> 4) * 0xFF51AFD7ED558CCDull;
        x ^= (uint64_t)(uint32_t)frames[i].offset * 0xC4CEB9FE1A85EC53ull;
        h = (h ^ x) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    return h;
}

// Field by field: CodeLoc has 4 bytes of padding that capture buffers leave
// uninitialised, so memcmp would intern one stack several times.
static bool same_frames(const CodeLoc *a, const CodeLoc *b, int n) {
    for (int i = 0; i < n; ++i)
        if (a[i].code != b[i].code || a[i].offset != b[i].offset) return false;
    return true;
}

size_t StackTable::find_slot(uint64_t h, const CodeLoc *frames, int n) const {
    size_t mask = index_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t v = index_[i];
        if (v == 0) return i;
        const Entry *e = entries_[v - 1];
        if (e->hash == h && e->n == n && same_frames(e->frames, frames, n)) return i;
    }
}

void StackTable::grow_index() {
    size_t new_size = index_.empty() ? 64 : index_.size() * 2;
    std::vector<uint32_t> old;
    old.swap(index_);
    index_.assign(new_size, 0);
    size_t mask = new_size - 1;
    for (uint32_t v : old) {
        if (v == 0) continue;
        size_t i = entries_[v - 1]->hash & mask;
        while (index_[i] != 0) i = (i + 1) & mask;
        index_[i] = v;
    }
}

uint32_t StackTable::intern(const CodeLoc *frames, int n) {
    if ((live_ + 1) * 2 > index_.size()) grow_index();
    uint64_t h = hash_frames(frames, n);
    size_t slot = find_slot(h, frames, n);
    if (index_[slot] != 0) {
        uint32_t id = index_[slot] - 1;
        entries_[id]->refcnt++;
        return id;
    }
    if (live_ >= cap_) {
        drops_++;
        return DROPPED;
    }
    size_t sz = sizeof(Entry) + sizeof(CodeLoc) * (size_t)(n > 0 ? n - 1 : 0);
    auto *e = (Entry *)std::malloc(sz);
    if (e == nullptr) {
        drops_++;
        return DROPPED;
    }
    e->hash = h;
    e->refcnt = 1;
    e->n = n;
    std::memset(e->frames, 0, sizeof(CodeLoc) * (size_t)n);
    for (int i = 0; i < n; ++i) {
        e->frames[i].code = frames[i].code;
        e->frames[i].offset = frames[i].offset;
        Py_INCREF((PyObject *)frames[i].code);
    }
    uint32_t id;
    if (!free_ids_.empty()) {
        id = free_ids_.back();
        free_ids_.pop_back();
        entries_[id] = e;
    } else {
        id = (uint32_t)entries_.size();
        entries_.push_back(e);
    }
    index_[slot] = id + 1;
    live_++;
    entry_bytes_ += sz;
    return id;
}

void StackTable::incref(uint32_t id) {
    if (id < entries_.size() && entries_[id] != nullptr) entries_[id]->refcnt++;
}

void StackTable::erase_from_index(uint32_t id) {
    // Backward-shift deletion keeps linear probing free of tombstones.
    size_t mask = index_.size() - 1;
    size_t i = entries_[id]->hash & mask;
    while (index_[i] != id + 1) i = (i + 1) & mask;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (index_[j] == 0) break;
        size_t home = entries_[index_[j] - 1]->hash & mask;
        // Move j back to i if its home is not cyclically in (i, j].
        bool in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            index_[i] = index_[j];
            i = j;
        }
    }
    index_[i] = 0;
}

void StackTable::decref(uint32_t id) {
    if (id >= entries_.size()) return;
    Entry *e = entries_[id];
    if (e == nullptr || --e->refcnt > 0) return;
    erase_from_index(id);
    entries_[id] = nullptr;
    free_ids_.push_back(id);
    live_--;
    size_t sz = sizeof(Entry) + sizeof(CodeLoc) * (size_t)(e->n > 0 ? e->n - 1 : 0);
    entry_bytes_ -= sz;
    std::vector<PyObject *> codes((size_t)e->n);
    for (int i = 0; i < e->n; ++i) codes[(size_t)i] = (PyObject *)e->frames[i].code;
    std::free(e);
    if (live_ == 0 && entries_.size() > 1024) {
        // Everything died: give the id and index arrays back.
        std::vector<Entry *>().swap(entries_);
        std::vector<uint32_t>().swap(free_ids_);
        std::vector<uint32_t>().swap(index_);
    }
    // Release code objects last: a dealloc may run arbitrary code that could
    // re-enter this table.
    for (PyObject *co : codes) Py_DECREF(co);
}

const CodeLoc *StackTable::frames(uint32_t id, int *n) const {
    if (id >= entries_.size() || entries_[id] == nullptr) {
        *n = 0;
        return nullptr;
    }
    *n = entries_[id]->n;
    return entries_[id]->frames;
}

size_t StackTable::bytes() const {
    return entry_bytes_ + entries_.capacity() * sizeof(Entry *) + free_ids_.capacity() * sizeof(uint32_t) +
           index_.capacity() * sizeof(uint32_t);
}

}  // namespace taskleak
