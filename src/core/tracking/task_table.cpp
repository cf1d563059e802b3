#include "tracking/task_table.hpp"
#include <thread>

namespace taskleak {

size_t TaskTable::slot_of(PyObject *ref) const {
    size_t mask = index_.size() - 1;
    for (size_t i = hash_ptr(ref) & mask;; i = (i + 1) & mask) {
        uint32_t v = index_[i];
        if (v == 0 || recs_[v - 1].ref == ref) return i;
    }
}

void TaskTable::grow_index(size_t min_index) {
    // The index only: records stay in their slots (free ones are reused
    // through free_), so growing never moves a slot under a reader.
    size_t n = 64;
    while (n < min_index || n * 7 < (live_ + 1) * 10) n *= 2;
    std::vector<uint32_t>(n, 0).swap(index_);
    size_t mask = n - 1;
    for (size_t k = 0; k < recs_.size(); ++k) {
        if (recs_[k].ref == nullptr) continue;
        size_t i = hash_ptr(recs_[k].ref) & mask;
        while (index_[i] != 0) i = (i + 1) & mask;
        index_[i] = (uint32_t)k + 1;
    }
}

void TaskTable::compact() {
    // Drop the free records: how memory goes back after a burst of tasks.
    // Records keep their order; moved_from_ says where each came from, and
    // each slot's touched bit moves with it, so a reader that cached slots
    // can follow (layout() tells it this happened).
    std::vector<CreationRecord> live;
    live.reserve(live_ + live_ / 4 + 16);
    std::vector<uint32_t> from;
    from.reserve(live_);
    std::vector<uint64_t> touched((live_ >> 6) + 1, 0);
    for (size_t j = 0; j < recs_.size(); ++j) {
        if (recs_[j].ref == nullptr) continue;
        const size_t k = live.size();
        if ((j >> 6) < touched_.size() && ((touched_[j >> 6] >> (j & 63)) & 1))
            touched[k >> 6] |= uint64_t(1) << (k & 63);
        live.push_back(recs_[j]);
        from.push_back((uint32_t)j);
    }
    recs_.swap(live);
    touched_.swap(touched);
    moved_from_.swap(from);
    ++layout_;
    std::vector<uint32_t>().swap(free_);
    grow_index(0);
}

void TaskTable::insert(const CreationRecord &rec) {
    // Index load factor kept under 0.7 (linear probing stays short); record
    // storage grows by 1/4 so capacity slack stays small: ~40 bytes a record
    // plus 6-12 bytes of index.
    if (index_.empty() || (live_ + 1) * 10 > index_.size() * 7) grow_index(index_.size() * 2);
    size_t i = slot_of(rec.ref);
    if (index_[i] != 0) {  // same weakref re-registered: refresh in place
        recs_[index_[i] - 1] = rec;
        touch(index_[i] - 1);
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
    touch(k);
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
    touch(v - 1);
    live_--;
    if (watching_) mark_gone(v - 1);  // before the task can be freed: our caller is its death
    // Shrink once three quarters of the storage is unused, and give
    // everything back when the last tracked task dies.
    if (live_ == 0) {
        std::vector<CreationRecord>().swap(recs_);
        std::vector<uint32_t>().swap(free_);
        std::vector<uint32_t>().swap(index_);
        std::vector<uint64_t>().swap(touched_);
        std::vector<uint32_t>().swap(moved_from_);  // every slot went
        ++layout_;
    } else if (!watching_ && recs_.size() > 1024 && live_ * 4 < recs_.size()) {
        compact();  // (while watching, slots must stay where the reader saw them)
    }
    return true;
}

void TaskTable::open_watch(size_t slots) {
    gone_words_ = 0;
    watch_slots(slots);
    watching_ = true;
}

void TaskTable::watch_slots(size_t slots) {
    if ((slots >> 6) < gone_words_) return;
    const size_t n = (slots >> 6) + (slots >> 8) + 4;
    std::unique_ptr<std::atomic<uint64_t>[]> bits(new std::atomic<uint64_t>[n]);
    for (size_t w = 0; w < n; ++w) bits[w].store(w < gone_words_ ? gone_[w].load() : 0, std::memory_order_relaxed);
    gone_.swap(bits);
    gone_words_ = n;
}

void TaskTable::close_watch() {
    watching_ = false;
    gone_.reset();
    gone_words_ = 0;
    if (live_ != 0 && recs_.size() > 1024 && live_ * 4 < recs_.size()) compact();  // held back while watching
}

uint64_t TaskTable::begin_word(size_t word) {
    reading_.store(word, std::memory_order_seq_cst);
    return word < gone_words_ ? gone_[word].load(std::memory_order_seq_cst) : ~uint64_t(0);
}

void TaskTable::mark_gone(size_t k) {
    const size_t word = k >> 6;
    if (word >= gone_words_) return;  // past what the reader may read
    gone_[word].fetch_or(uint64_t(1) << (k & 63), std::memory_order_seq_cst);
    // The reader is in this word (a microsecond), or was preempted there.
    for (int spins = 0; reading_.load(std::memory_order_seq_cst) == word; ++spins)
        if (spins >= 100) std::this_thread::yield();
}

void TaskTable::forget_watch_after_fork() {
    reading_.store(NOT_READING, std::memory_order_relaxed);
    watching_ = false;
    gone_.reset();
    gone_words_ = 0;
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
           touched_.capacity() * sizeof(uint64_t) + moved_from_.capacity() * sizeof(uint32_t) +
           index_.capacity() * sizeof(uint32_t) + graveyard_.size() * (sizeof(Buried) + 4 * sizeof(void *));
}

}  // namespace taskleak
