// The side table: one creation record per tracked live task, keyed by the
// weak reference taskleak holds on the task (the reference whose callback
// tells us the task died). 40 bytes a record plus ~8-16 bytes of index.
#pragma once
#include <Python.h>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

namespace taskleak {

struct CreationRecord {
    PyObject *ref;           // our weakref to the task: the key
    PyObject *task;          // the task's address; only compared after death
    int64_t created_ns;      // CLOCK_MONOTONIC, comparable to time.monotonic()
    uint32_t serial;         // 1, 2, 3... per tracked task
    uint32_t parent_serial;  // serial of the creating task, 0 if none/untracked
    uint32_t stack;          // StackTable id of the creation stack
    uint16_t thread;         // index into the thread table
    uint16_t scope;          // check() scope tag, 0 = none
};

class TaskTable {
public:
    void insert(const CreationRecord &rec);
    CreationRecord *find(PyObject *ref);
    // Removes the record for `ref`, copying it to *out. False if absent.
    bool remove(PyObject *ref, CreationRecord *out);

    // Records of tasks that died inside a GC pass. The collector clears weak
    // references (running our callbacks) *before* it calls finalizers, and the
    // finalizer is what reports "Task was destroyed but it is pending!": keep
    // the record reachable by task address until the pass ends.
    // `chain` is the StackTable id of the await chain captured at burial:
    // by the time the finalizer reports, the coroutine has usually been
    // closed by its own finalizer.
    void bury(const CreationRecord &rec, uint32_t chain) { graveyard_[rec.task] = Buried{rec, chain}; }
    const CreationRecord *find_buried(PyObject *task, uint32_t *chain = nullptr) const;
    struct Buried {
        CreationRecord rec;
        uint32_t chain;
    };
    std::vector<Buried> take_graveyard();

    size_t size() const { return live_; }
    size_t buried() const { return graveyard_.size(); }
    size_t bytes() const;

    // Slot access for passes that drop the GIL between chunks (the monitor's
    // sampler): slot i's record, nullptr if free or past the end. Slots move
    // only when the table compacts, so such a pass is approximate by design.
    size_t slots() const { return recs_.size(); }
    const CreationRecord *slot(size_t i) const {
        return i < recs_.size() && recs_[i].ref != nullptr ? &recs_[i] : nullptr;
    }

    // Which slots changed since a reader last looked, for the monitor's
    // tally: one bit per slot, set when a record is inserted, refreshed or
    // removed there. A reader that caches what it saw of a slot can skip the
    // record (40 bytes) of every slot whose bit is clear. `layout()` changes
    // when the records are compacted (slots move) or all given back;
    // `moved_from()` then maps each new slot to the one it came from (the
    // touched bits moved with them), for the last such change only.
    // One reader only: taking a word clears it.
    uint64_t layout() const { return layout_; }
    const std::vector<uint32_t> &moved_from() const { return moved_from_; }
    uint64_t touched_word(size_t word) const { return word < touched_.size() ? touched_[word] : 0; }
    uint64_t take_touched(size_t word) {
        if (word >= touched_.size()) return 0;
        uint64_t v = touched_[word];
        touched_[word] = 0;
        return v;
    }

    // For a pass that reads tasks' memory without the GIL (the monitor's
    // count). While a watch is open the table does not compact, and a slot
    // whose record goes is marked gone. The reader announces each word (64
    // slots) it reads and takes the word's gone bits; a remover marks its
    // slot, then waits while the reader is in that word. A task is freed
    // only after its record goes (its weakref's callback or its finalizer
    // runs first), so the reader never reads a freed task: either it sees
    // the mark, or the remover sees it in the word and waits (both sides
    // order their store before their load: seq_cst). A remover waits only
    // when its slot is in the very word being read (~1 microsecond), never
    // on the whole pass. One watch at a time; open, close and watch_slots
    // with the GIL held and no word being read; the rest from any thread.
    void open_watch(size_t slots);
    void watch_slots(size_t slots);  // mark slots up to `slots` too
    void close_watch();
    uint64_t begin_word(size_t word);  // the word's gone bits, and the reader is in it
    void end_word() { reading_.store(NOT_READING, std::memory_order_release); }
    // In a forked child: the thread that was reading does not exist there.
    void forget_watch_after_fork();

    template <class F>
    void for_each(F &&f) const {
        for (const CreationRecord &r : recs_)
            if (r.ref != nullptr) f(r);
    }

private:
    static size_t hash_ptr(const void *p) {
        return (size_t)(((uint64_t)(uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 16);
    }
    size_t slot_of(PyObject *ref) const;  // slot holding ref, or the empty slot to use
    void grow_index(size_t min_index);
    void compact();
    void erase_slot(size_t i);
    void touch(size_t k) {
        if ((k >> 6) >= touched_.size()) touched_.resize((k >> 6) + (k >> 8) + 4, 0);
        touched_[k >> 6] |= uint64_t(1) << (k & 63);
    }

    std::vector<CreationRecord> recs_;  // ref == nullptr marks a free record
    std::vector<uint32_t> free_;
    std::vector<uint32_t> index_;  // record index + 1, 0 = empty
    size_t live_ = 0;
    std::vector<uint64_t> touched_;
    std::vector<uint32_t> moved_from_;
    uint64_t layout_ = 1;
    std::unordered_map<PyObject *, Buried> graveyard_;
    void mark_gone(size_t k);
    static constexpr size_t NOT_READING = SIZE_MAX;
    bool watching_ = false;
    std::atomic<size_t> reading_{NOT_READING};       // the word being read without the GIL
    std::unique_ptr<std::atomic<uint64_t>[]> gone_;  // one bit per slot, while watching_
    size_t gone_words_ = 0;
};

}  // namespace taskleak
