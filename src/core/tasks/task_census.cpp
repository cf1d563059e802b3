#include "tasks/task_census.hpp"
#include "tasks/await_chain.hpp"
#include "cpython/weakref_list.hpp"
#include "tracking/tracker.hpp"
#include <algorithm>
#include <queue>
#include <unordered_map>

namespace taskleak {

static PyObject *s(const char *x) { return PyUnicode_InternFromString(x); }

static std::vector<TaskCensus *> &registry() {
    static std::vector<TaskCensus *> r;
    return r;
}

const std::vector<TaskCensus *> &TaskCensus::live() { return registry(); }

TaskCensus::TaskCensus() : chains_(1u << 30) { registry().push_back(this); }

TaskCensus::~TaskCensus() {
    auto &r = registry();
    r.erase(std::remove(r.begin(), r.end(), this), r.end());
    Tracker &t = tracker();
    for (CensusRow &r : rows) {
        if (r.creation < StackTable::DROPPED) t.stacks.decref(r.creation);
        Py_XDECREF(r.task);
        Py_XDECREF(r.waiter);
        Py_XDECREF(r.leaf);
    }
}

static TaskState state_of(PyObject *task) {
    static PyObject *state_attr = s("_state");
    static PyObject *exc_attr = s("_exception");
    PyObject *st = PyObject_GetAttr(task, state_attr);
    if (st == nullptr) {
        PyErr_Clear();
        return TaskState::Pending;
    }
    TaskState out = TaskState::Pending;
    if (PyUnicode_Check(st)) {
        if (PyUnicode_CompareWithASCIIString(st, "CANCELLED") == 0) {
            out = TaskState::Cancelled;
        } else if (PyUnicode_CompareWithASCIIString(st, "FINISHED") == 0) {
            out = TaskState::Done;
            PyObject *exc = PyObject_GetAttr(task, exc_attr);
            if (exc == nullptr) PyErr_Clear();
            else if (exc != Py_None) out = TaskState::Failed;
            Py_XDECREF(exc);
        }
    }
    Py_DECREF(st);
    return out;
}

// A task to census: a strong reference and a copy of its creation record
// (copied: the table may move its records if Python code runs meanwhile).
struct TaskCensus::Input {
    PyObject *task;
    CreationRecord rec;
    bool tracked;
};

// Addresses seen, for the union of the sources: open addressing, load <= 1/2.
namespace {
class AddrSet {
public:
    explicit AddrSet(size_t n) {
        size_t cap = 64;
        while (cap < 2 * n + 2) cap <<= 1;
        keys_.assign(cap, nullptr);
    }
    bool insert(PyObject *p) {  // true if it was not there
        if (2 * (size_ + 1) > keys_.size()) grow();
        size_t mask = keys_.size() - 1;
        for (size_t i = hash(p) & mask;; i = (i + 1) & mask) {
            if (keys_[i] == p) return false;
            if (keys_[i] == nullptr) {
                keys_[i] = p;
                ++size_;
                return true;
            }
        }
    }

private:
    static size_t hash(const void *p) { return (size_t)(((uint64_t)(uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 20); }
    void grow() {
        std::vector<PyObject *> old;
        old.swap(keys_);
        keys_.assign(old.size() * 2, nullptr);
        size_ = 0;
        for (PyObject *p : old)
            if (p != nullptr) insert(p);
    }
    std::vector<PyObject *> keys_;
    size_t size_ = 0;
};

// Prefetching. A census of 100,000 tasks reads task -> coroutine -> awaited
// coroutine... scattered over the heap: one cache miss after another, each
// dependent on the previous. Tasks are therefore processed in batches: the
// next batch's task objects, and their coroutines, are prefetched while the
// current batch is read, and a batch's await chains advance one link at a time
// across the batch, each chain's next object prefetched while the others are
// read. A prefetch never faults, whatever the address, so guesses are safe.
inline void prefetch_object(const void *p, int lines) {
    for (int i = 0; i < lines; ++i) __builtin_prefetch((const char *)p + 64 * i);
}

// Where the task type seen last keeps its coroutine and the future it waits
// on, learned by looking for the values the attributes returned among the
// task's words (within tp_basicsize). Used only to prefetch those objects
// before asking for the attributes: a wrong offset costs a miss, not a read.
struct FieldHints {
    PyTypeObject *type = nullptr;
    Py_ssize_t coro = -1;
    Py_ssize_t waiter = -1;

    static Py_ssize_t offset_of(PyObject *obj, PyObject *value) {
        Py_ssize_t size = Py_TYPE(obj)->tp_basicsize;
        for (Py_ssize_t off = (Py_ssize_t)sizeof(PyObject); off + (Py_ssize_t)sizeof(void *) <= size;
             off += (Py_ssize_t)sizeof(void *))
            if (*(PyObject **)((char *)obj + off) == value) return off;
        return -1;
    }
    void learn(PyObject *task, PyObject *coro_obj, PyObject *waiter_obj) {
        if (Py_TYPE(task) != type) {
            type = Py_TYPE(task);
            coro = waiter = -1;
        }
        if (coro < 0 && coro_obj != nullptr) coro = offset_of(task, coro_obj);
        if (waiter < 0 && waiter_obj != nullptr) waiter = offset_of(task, waiter_obj);
    }
    // Call once the task's first lines are in cache (prefetched a batch ago).
    void prefetch_fields(PyObject *task) const {
        if (Py_TYPE(task) != type) return;
        if (coro >= 0) prefetch_object(*(PyObject **)((char *)task + coro), 4);
        if (waiter >= 0) prefetch_object(*(PyObject **)((char *)task + waiter), 1);
    }
};
FieldHints field_hints;

// Measured (3.11, 100,000 tasks): see docs/internals.md.
constexpr size_t BATCH = 16;
constexpr int TASK_LINES = 4;  // a C Task is ~200 bytes plus its GC header
constexpr int CORO_LINES = 4;  // a coroutine's frame is inside it from 3.11 on
}  // namespace

void TaskCensus::collect_inputs(std::vector<Input> &in, int chain_depth) {
    static PyObject *coro_attr = s("_coro");
    static PyObject *waiter_attr = s("_fut_waiter");
    Tracker &t = tracker();
    size_t depth = (size_t)(chain_depth > 0 ? chain_depth : 1);
    std::vector<cpython::CodeLoc> buf(BATCH * depth);
    ChainWalk walks[BATCH];
    rows.reserve(rows.size() + in.size());
    for (size_t i = 0; i < in.size() && i < BATCH; ++i) prefetch_object(in[i].task, TASK_LINES);
    for (size_t b = 0; b < in.size(); b += BATCH) {
        size_t e = std::min(in.size(), b + BATCH);
        for (size_t j = e; j < in.size() && j < e + BATCH; ++j) prefetch_object(in[j].task, TASK_LINES);
        size_t first_row = rows.size();
        // The tasks' own fields; their coroutines were prefetched a batch ago.
        for (size_t i = b; i < e; ++i) {
            PyObject *task = in[i].task;
            CensusRow row{};
            row.task = task;  // the input's reference moves to the row
            row.state = state_of(task);
            row.created_ns = -1;
            row.creation = StackTable::NONE;
            row.chain = StackTable::NONE;
            if (in[i].tracked) {
                const CreationRecord &r = in[i].rec;
                row.created_ns = r.created_ns;
                row.serial = r.serial;
                row.parent_serial = r.parent_serial;
                row.thread = r.thread < t.threads.size() ? t.threads[r.thread] : 0;
                row.creation = r.stack;
                row.scope = r.scope;
                if (row.creation < StackTable::DROPPED) t.stacks.incref(row.creation);
            }
            PyObject *coro = nullptr;
            if (row.state == TaskState::Pending) {
                row.waiter = PyObject_GetAttr(task, waiter_attr);
                if (row.waiter == nullptr) PyErr_Clear();
                else if (row.waiter == Py_None) Py_CLEAR(row.waiter);
                coro = PyObject_GetAttr(task, coro_attr);
                if (coro == nullptr) PyErr_Clear();
                if (field_hints.type != Py_TYPE(task) || field_hints.coro < 0 || field_hints.waiter < 0)
                    field_hints.learn(task, coro, row.waiter);
            }
            walks[i - b].begin(coro, &buf[(i - b) * depth], chain_depth);
            Py_XDECREF(coro);  // the walk holds its own reference
            rows.push_back(row);
        }
        // The next batch's tasks have arrived by now: prefetch their fields.
        for (size_t j = e; j < in.size() && j < e + BATCH; ++j) field_hints.prefetch_fields(in[j].task);
        // The await chains, one link of each chain at a time.
        for (bool more = true; more;) {
            more = false;
            for (size_t k = 0; k < e - b; ++k) {
                if (walks[k].step()) {
                    prefetch_object(walks[k].obj, CORO_LINES);
                    more = true;
                }
            }
        }
        for (size_t k = 0; k < e - b; ++k) {
            CensusRow &row = rows[first_row + k];
            row.leaf = walks[k].leaf;
            walks[k].leaf = nullptr;
            if (walks[k].n > 0) row.chain = chains_.intern(walks[k].out, walks[k].n);
        }
    }
}

void TaskCensus::collect(PyObject *task_list, int chain_depth) {
    PyObject *seq = PySequence_Fast(task_list, "collect() needs a sequence of tasks");
    if (seq == nullptr) return;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    std::vector<Input> in;
    in.reserve((size_t)n);
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject *task = PySequence_Fast_GET_ITEM(seq, i);
        Input x{Py_NewRef(task), {}, false};
        if (const CreationRecord *r = lookup_record(task)) {
            x.rec = *r;
            x.tracked = true;
        }
        in.push_back(x);
    }
    Py_DECREF(seq);
    collect_inputs(in, chain_depth);
}

bool TaskCensus::collect_live(PyObject *weakref_set, PyObject *strong_sets, int chain_depth) {
    Tracker &t = tracker();
    const TaskTable &table = t.tasks;
    std::vector<Input> in;
    in.reserve(table.size());
    // 1. The records, in slot order: a sequential read. The task of a live
    // record is alive (the record goes when its weakref's callback runs or
    // the task is finalised); record_task checks the weakref all the same.
    // No Python code runs in this loop, so the borrowed addresses stay valid
    // until the references are taken just after it.
    constexpr size_t AHEAD = 8;
    size_t slots = table.slots();
    for (size_t i = 0; i < slots; ++i) {
        if (const CreationRecord *ahead = table.slot(i + AHEAD)) prefetch_object(ahead->ref, 1);
        const CreationRecord *r = table.slot(i);
        if (r == nullptr) continue;
        if (PyObject *task = record_task(*r)) in.push_back(Input{task, *r, true});
    }
    AddrSet seen(in.size() + 64);
    size_t kept = 0;
    for (size_t i = 0; i < in.size(); ++i) {
        if (i + AHEAD < in.size()) prefetch_object(in[i + AHEAD].task, 1);
        Input x = in[i];
        if (!seen.insert(x.task)) {
            // Two records for one task (should not happen): the one the
            // lookup by task finds, as collect() would use.
            for (size_t j = 0; j < kept; ++j)
                if (in[j].task == x.task) {
                    if (const CreationRecord *r = lookup_record(x.task)) in[j].rec = *r;
                    break;
                }
            continue;
        }
        Py_INCREF(x.task);
        in[kept++] = x;
    }
    in.resize(kept);
    // 2. Tasks without a live record: created before tracking started, on a
    // loop taskleak does not track, or (during a collection) already buried.
    auto add_untracked = [&](PyObject *task) {
        if (task == nullptr || task == Py_None || !seen.insert(task)) return;
        Input x{Py_NewRef(task), {}, false};
        if (const CreationRecord *r = lookup_record(task)) {
            x.rec = *r;
            x.tracked = true;
        }
        in.push_back(x);
    };
    bool ok = true;
    if (weakref_set != Py_None) {
        PyObject *items = PySequence_List(weakref_set);  // a copy: callbacks may change the set
        if (items == nullptr) ok = false;
        for (Py_ssize_t i = 0; ok && i < PyList_GET_SIZE(items); ++i) {
            PyObject *wr = PyList_GET_ITEM(items, i);
            if (PyWeakref_Check(wr)) add_untracked(cpython::weakref_peek(wr));
        }
        Py_XDECREF(items);
    }
    PyObject *it = ok ? PyObject_GetIter(strong_sets) : nullptr;
    if (it == nullptr) ok = false;
    while (ok) {
        PyObject *container = PyIter_Next(it);
        if (container == nullptr) {
            ok = !PyErr_Occurred();
            break;
        }
        PyObject *items = PySequence_List(container);
        Py_DECREF(container);
        if (items == nullptr) {
            ok = false;
            break;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); ++i) add_untracked(PyList_GET_ITEM(items, i));
        Py_DECREF(items);
    }
    Py_XDECREF(it);
    if (!ok) {
        for (Input &x : in) Py_DECREF(x.task);
        return false;
    }
    collect_inputs(in, chain_depth);
    return true;
}

std::vector<std::vector<uint32_t>> TaskCensus::groups() const {
    struct Key {
        uint32_t creation, chain;
        PyTypeObject *waiter_type;
        TaskState state;
        bool operator==(const Key &o) const {
            return creation == o.creation && chain == o.chain && waiter_type == o.waiter_type && state == o.state;
        }
    };
    struct KeyHash {
        size_t operator()(const Key &k) const {
            uint64_t h = ((uint64_t)k.creation << 32) ^ k.chain;
            h ^= (uint64_t)(uintptr_t)k.waiter_type * 0x9E3779B97F4A7C15ull;
            h ^= (uint64_t)k.state << 7;
            return (size_t)(h * 0xFF51AFD7ED558CCDull >> 17);
        }
    };
    std::unordered_map<Key, size_t, KeyHash> where;
    std::vector<std::vector<uint32_t>> out;
    for (uint32_t i = 0; i < rows.size(); ++i) {
        const CensusRow &r = rows[i];
        Key k{r.creation, r.chain, r.waiter ? Py_TYPE(r.waiter) : nullptr, r.state};
        auto it = where.find(k);
        if (it == where.end()) {
            where.emplace(k, out.size());
            out.push_back({i});
        } else {
            out[it->second].push_back(i);
        }
    }
    std::stable_sort(out.begin(), out.end(), [](const auto &a, const auto &b) { return a.size() > b.size(); });
    return out;
}

GroupSummary TaskCensus::summarize(const std::vector<uint32_t> &group, size_t k, size_t top) const {
    GroupSummary out;
    std::priority_queue<std::pair<uint32_t, uint32_t>> lowest;  // max-heap of the k lowest (serial, row)
    struct Seen {
        uint32_t count, first;
    };
    std::unordered_map<uint32_t, Seen> parents;
    for (uint32_t pos = 0; pos < group.size(); ++pos) {
        uint32_t i = group[pos];
        const CensusRow &r = rows[i];
        if (r.created_ns >= 0) {
            if (out.births == 0 || r.created_ns < out.min_created) out.min_created = r.created_ns;
            if (out.births == 0 || r.created_ns > out.max_created) out.max_created = r.created_ns;
            ++out.births;
        }
        if (r.serial == 0) {
            if (out.untracked.size() < k) out.untracked.push_back(i);
        } else if (k > 0 && (lowest.size() < k || r.serial < lowest.top().first)) {
            lowest.emplace(r.serial, i);
            if (lowest.size() > k) lowest.pop();
        }
        if (r.parent_serial != 0) {
            auto it = parents.find(r.parent_serial);
            if (it == parents.end()) parents.emplace(r.parent_serial, Seen{1, pos});
            else ++it->second.count;
        }
    }
    for (; !lowest.empty(); lowest.pop()) out.oldest.push_back(lowest.top());
    std::reverse(out.oldest.begin(), out.oldest.end());
    out.distinct_parents = (uint32_t)parents.size();
    std::vector<std::pair<uint32_t, Seen>> ranked(parents.begin(), parents.end());
    std::sort(ranked.begin(), ranked.end(), [](const auto &a, const auto &b) {
        return a.second.count != b.second.count ? a.second.count > b.second.count : a.second.first < b.second.first;
    });
    for (size_t j = 0; j < ranked.size() && j < top; ++j)
        out.parents.emplace_back(ranked[j].first, ranked[j].second.count);
    return out;
}

int64_t TaskCensus::row_of_serial(uint32_t serial) const {
    // A linear scan (~0.1 ms over 100,000 rows): a report asks for a handful
    // of serials, which does not pay for a 100,000-entry map.
    if (serial == 0) return -1;
    for (size_t i = 0; i < rows.size(); ++i)
        if (rows[i].serial == serial) return (int64_t)i;
    return -1;
}

}  // namespace taskleak
