#include "tracking/task_table.hpp"

namespace taskleak {

size_t TaskTable::slot_of(PyObject *ref) const {
    size_t mask = index_.size() - 1;
    for (size_t i = hash_ptr(ref) & mask;; i = (i + 1) & mask) {
        uint32_t v = index_[i];
        if (v == 0 || recs_[v - 1].ref == ref) return i;
    }
}

void TaskTable::rebuild(size_t min_index) {
    // Compact the records (dropping free ones) and rebuild the index at a
    // load factor below 0.7. Also how memory goes back after a burst of tasks.
    std::vector<CreationRecord> live;
    live.reserve(live_ + live_ / 4 + 16);
    for (const CreationRecord &r : recs_)
        if (r.ref != nullptr) live.push_back(r);
    recs_.swap(live);
    std::vector<uint32_t>().swap(free_);
    size_t n = 64;
    while (n < min_index || n * 7 < (live_ + 1) * 10) n *= 2;
    std::vector<uint32_t>(n, 0).swap(index_);
    size_t mask = n - 1;
    for (size_t k = 0; k < recs_.size(); ++k) {
        size_t i = hash_ptr(recs_[k].ref) & mask;
        while (index_[i] != 0) i = (i + 1) & mask;
        index_[i] = (uint32_t)k + 1;
    }
}

void TaskTable::insert(const CreationRecord &rec) {
    // Index load factor kept under 0.7 (linear probing stays short); record
    // storage grows by 1/4 so capacity slack stays small: ~40 bytes a record
    // plus 6-12 bytes of index.
    if (index_.empty() || (live_ + 1) * 10 > index_.size() * 7) rebuild(index_.size() * 2);
    size_t i = slot_of(rec.ref);
    if (index_[i] != 0) {  // same weakref re-registered: refresh in place
        recs_[index_[i] - 1] = rec;
        return;
    }
    uint32_t k;
    if (!free_.empty()) {
        k = free_.back();
        free_.pop_back();
        recs_[k] = rec;
    } else {
        if (recs_.size() == recs_.capacity()) recs_.reserve(recs_.size() + recs_.size() / 4 + 16);
        k = (uint32_t)recs_.size();
        recs_.push_back(rec);
    }
    index_[i] = k + 1;
    live_++;
}

CreationRecord *TaskTable::find(PyObject *ref) {
    if (index_.empty()) return nullptr;
    uint32_t v = index_[slot_of(ref)];
    return v ? &recs_[v - 1] : nullptr;
}

void TaskTable::erase_slot(size_t i) {
    size_t mask = index_.size() - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (index_[j] == 0) break;
        size_t home = hash_ptr(recs_[index_[j] - 1].ref) & mask;
        bool in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            index_[i] = index_[j];
            i = j;
        }
    }
    index_[i] = 0;
}

bool TaskTable::remove(PyObject *ref, CreationRecord *out) {
    if (index_.empty()) return false;
    size_t i = slot_of(ref);
    uint32_t v = index_[i];
    if (v == 0) return false;
    *out = recs_[v - 1];
    erase_slot(i);
    recs_[v - 1].ref = nullptr;
    free_.push_back(v - 1);
    live_--;
    // Shrink once three quarters of the storage is unused, and give
    // everything back when the last tracked task dies.
    if (live_ == 0) {
        std::vector<CreationRecord>().swap(recs_);
        std::vector<uint32_t>().swap(free_);
        std::vector<uint32_t>().swap(index_);
    } else if (recs_.size() > 1024 && live_ * 4 < recs_.size()) {
        rebuild(0);
    }
    return true;
}

const CreationRecord *TaskTable::find_buried(PyObject *task, uint32_t *chain) const {
    auto it = graveyard_.find(task);
    if (it == graveyard_.end()) return nullptr;
    if (chain) *chain = it->second.chain;
    return &it->second.rec;
}

std::vector<TaskTable::Buried> TaskTable::take_graveyard() {
    std::vector<Buried> out;
    out.reserve(graveyard_.size());
    for (auto &kv : graveyard_) out.push_back(kv.second);
    graveyard_.clear();
    return out;
}

size_t TaskTable::bytes() const {
    return recs_.capacity() * sizeof(CreationRecord) + free_.capacity() * sizeof(uint32_t) +
           index_.capacity() * sizeof(uint32_t) + graveyard_.size() * (sizeof(Buried) + 4 * sizeof(void *));
}

}  // namespace taskleak
