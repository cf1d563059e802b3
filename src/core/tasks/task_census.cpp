#include "tasks/task_census.hpp"
#include "tasks/await_chain.hpp"
#include "cpython/attr_reader.hpp"
#include "cpython/set_items.hpp"
#include "cpython/task_lists.hpp"
#include "cpython/weakref_list.hpp"
#include "tracking/tracker.hpp"
#include <algorithm>
#include <cstdint>
#include <queue>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace taskleak {

// The largest buffers of censuses gone, kept for the next census (every
// census is made and freed with the GIL held). 100,000 rows are 7 MB, which
// malloc maps afresh for each census and the kernel hands over zeroed, a
// page fault per 4 KB: 1,758 faults, ~2 ms of a 16 ms census (3.14). A
// census of the live tasks lets go of a spare more than four times its
// size, so what is kept follows the number of tasks down.
template <class T>
static std::vector<T> &spare() {
    // Never destroyed: a census may be freed after static destructors ran.
    static auto *s = new std::vector<T>();
    return *s;
}

// Room for n items in `v` (empty), from the spare if it fits n.
template <class T>
static void take_spare(std::vector<T> &v, size_t n) {
    std::vector<T> &s = spare<T>();
    if (v.empty() && v.capacity() < n && s.capacity() >= n && s.capacity() / 4 <= n) v.swap(s);
    v.reserve(n);
}

template <class T>
static void give_spare(std::vector<T> &v) {
    v.clear();
    if (v.capacity() > spare<T>().capacity()) v.swap(spare<T>());
}

template <class T>
static void trim_spare(size_t n) {
    if (spare<T>().capacity() / 4 > n + 1024) std::vector<T>().swap(spare<T>());
}

static std::vector<TaskCensus *> &registry() {
    static std::vector<TaskCensus *> r;
    return r;
}

const std::vector<TaskCensus *> &TaskCensus::live() { return registry(); }

// Calls f on each spare a census takes: the rows, the row groups and the
// set of addresses (the one list of them to keep in step).
template <class F>
static void each_spare(F f) {
    f(spare<CensusRow>());
    f(spare<uint32_t>());
    f(spare<const void *>());
}

size_t TaskCensus::spare_bytes() {
    size_t bytes = 0;
    each_spare([&](auto &v) { bytes += v.capacity() * sizeof(v[0]); });
    return bytes;
}

void TaskCensus::release_spares() {
    each_spare([](auto &v) { std::decay_t<decltype(v)>().swap(v); });
}

TaskCensus::TaskCensus() : chains_(1u << 30) { registry().push_back(this); }

TaskCensus::~TaskCensus() {
    auto &r = registry();
    r.erase(std::remove(r.begin(), r.end(), this), r.end());
    Tracker &t = tracker();
    // Each reference count let go of here is a cache miss: the census read
    // every task since, and the report may have run for a while. The
    // objects of the row 8 ahead are fetched first, so the misses overlap:
    // 2.7-2.9 -> 2.0 ms to free a census of 100,000 tasks (3.14; 16 rows
    // ahead measured the same).
    constexpr size_t AHEAD = 8;
    for (size_t i = 0; i < rows.size(); ++i) {
        if (i + AHEAD < rows.size()) {
            const CensusRow &n = rows[i + AHEAD];
            __builtin_prefetch(n.task, 1);
            if (n.waiter != nullptr) __builtin_prefetch(n.waiter, 1);
            if (n.leaf != nullptr && n.leaf != n.waiter) __builtin_prefetch(n.leaf, 1);
        }
        CensusRow &r = rows[i];
        if (r.creation < StackTable::DROPPED) t.stacks.decref(r.creation);
        Py_XDECREF(r.task);
        Py_XDECREF(r.waiter);
        Py_XDECREF(r.leaf);
    }
    give_spare(rows);
    give_spare(group_of_);
}

// The task attributes a census reads (see cpython/attr_reader.hpp); made on
// first use, with the GIL held.
struct TaskAttrs {
    cpython::AttrReader state{"_state"}, exception{"_exception"}, coro{"_coro"}, waiter{"_fut_waiter"};
};
static TaskAttrs &attrs() {
    static TaskAttrs a;
    return a;
}

// The three state strings asyncio's tasks return, remembered (a strong
// reference each) the first time they are seen: later tasks' states are then
// one pointer comparison instead of string comparisons.
static PyObject *state_strings[3];

static TaskState state_of(PyObject *task) {
    PyObject *st = attrs().state.get(task);
    if (st == nullptr) return TaskState::Pending;
    int which = st == state_strings[0] ? 0 : st == state_strings[1] ? 1 : st == state_strings[2] ? 2 : -1;
    if (which < 0 && PyUnicode_Check(st)) {
        which = PyUnicode_CompareWithASCIIString(st, "PENDING") == 0     ? 0
                : PyUnicode_CompareWithASCIIString(st, "CANCELLED") == 0 ? 1
                : PyUnicode_CompareWithASCIIString(st, "FINISHED") == 0  ? 2
                                                                         : -1;
        if (which >= 0 && state_strings[which] == nullptr) state_strings[which] = Py_NewRef(st);
    }
    Py_DECREF(st);
    if (which == 1) return TaskState::Cancelled;
    if (which != 2) return TaskState::Pending;
    PyObject *exc = attrs().exception.get(task);
    TaskState out = exc != nullptr && exc != Py_None ? TaskState::Failed : TaskState::Done;
    Py_XDECREF(exc);
    return out;
}

// Addresses seen, for the union of the sources: open addressing, load <= 1/2.
namespace {
class AddrSet {
public:
    explicit AddrSet(size_t n) {
        size_t cap = 64;
        while (cap < 2 * n + 2) cap <<= 1;
        take_spare(keys_, cap);
        keys_.assign(cap, nullptr);
    }
    AddrSet() : keys_(64, nullptr) {}  // a placeholder: nothing taken from the spare
    AddrSet(const AddrSet &) = delete;
    AddrSet(AddrSet &&o) noexcept : keys_(std::move(o.keys_)), size_(o.size_) {}
    AddrSet &operator=(AddrSet &&o) noexcept {
        give_spare(keys_);
        keys_.swap(o.keys_);
        size_ = o.size_;
        return *this;
    }
    ~AddrSet() { give_spare(keys_); }
    bool insert(const void *p) {  // true if it was not there
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
    bool contains(const void *p) const {
        size_t mask = keys_.size() - 1;
        for (size_t i = hash(p) & mask;; i = (i + 1) & mask) {
            if (keys_[i] == p) return true;
            if (keys_[i] == nullptr) return false;
        }
    }

private:
    // Objects allocated one after another (a burst of tasks) sit close in
    // memory: the low bits of the 16-byte unit (a 64 KB window) stay in
    // order and only the window number is scrambled, so neighbours land in
    // neighbouring slots and the set is walked almost sequentially.
    static size_t hash(const void *p) {
        uint64_t a = (uint64_t)(uintptr_t)p >> 4;
        return (size_t)((a & 0xFFF) | (((a >> 12) * 0x9E3779B97F4A7C15ull >> 32) << 12));
    }
    void grow() {
        std::vector<const void *> old;
        old.swap(keys_);
        keys_.assign(old.size() * 2, nullptr);
        size_ = 0;
        for (const void *p : old)
            if (p != nullptr) insert(p);
    }
    std::vector<const void *> keys_;
    size_t size_ = 0;
};
}  // namespace

// A row's creation fields from record `r` (nullptr: unknown).
static void set_record(CensusRow &row, const CreationRecord *r) {
    Tracker &t = tracker();
    if (row.creation < StackTable::DROPPED) t.stacks.decref(row.creation);
    row.created_ns = -1;
    row.serial = row.parent_serial = 0;
    row.thread = 0;
    row.creation = StackTable::NONE;
    row.scope = 0;
    if (r == nullptr) return;
    row.created_ns = r->created_ns;
    row.serial = r->serial;
    row.parent_serial = r->parent_serial;
    row.thread = r->thread < t.threads.size() ? t.threads[r->thread] : 0;
    row.creation = r->stack;
    row.scope = r->scope;
    if (row.creation < StackTable::DROPPED) t.stacks.incref(row.creation);
}

void TaskCensus::add_row(PyObject *task, const CreationRecord *r) {
    CensusRow row{};
    row.task = Py_NewRef(task);
    // Read here, where the task is read anyway (see lists_cover). Tasks
    // created one after another are listed one after another, and usually
    // have rows one after another too: a row is then checked by a compare.
    if (listed_type_ != nullptr) {
        if (const void *before = cpython::listed_before(task)) {
            if (before != last_listed_) unchecked_before_.push_back(before);
            last_listed_ = cpython::list_node(task);
        }
    }
    row.creation = StackTable::NONE;
    row.chain = StackTable::NONE;
    set_record(row, r);
    rows.push_back(row);
}

// Field by field: CodeLoc has padding that walk buffers leave uninitialised.
static bool same_locs(const cpython::CodeLoc *a, const cpython::CodeLoc *b, int n) {
    for (int i = 0; i < n; ++i)
        if (a[i].code != b[i].code || a[i].offset != b[i].offset) return false;
    return true;
}

void TaskCensus::read_tasks(size_t first, int chain_depth) {
    std::vector<cpython::CodeLoc> buf((size_t)(chain_depth > 0 ? chain_depth : 1)), last(buf.size());
    int last_n = 0;  // the chain interned last: its frames and id
    uint32_t last_id = StackTable::NONE;
    TaskAttrs &a = attrs();
    AwaitWalk walker;
    // The task 8 rows ahead is prefetched (its first 4 lines: a C Task and
    // its GC header). Measured on 100,000 tasks, 3.11: 2-6% less census time
    // on a heap where tasks are scattered among other objects, nothing
    // measurable where a burst of creation laid them out in order (the
    // hardware prefetcher's case; bench/bench_snapshot.py). Prefetching each
    // task's coroutine too, advancing 16 await chains a link at a time, and
    // (with the borrowed walk) a second pass fetching the first three links
    // of rows 12, 8 and 4 ahead gained nothing more in the benchmark (old,
    // borrowed walk, staged: 12.2-13.1, 12.5-12.7, 12.1-14.3 ms of
    // snapshot+format, 3.11), and were dropped.
    constexpr size_t AHEAD = 8;
    // rows[i] is re-read after every call that may run Python code (and so,
    // in principle, a census of its own: rows is ours alone, but the
    // reference is not kept across calls all the same).
    auto read_row = [&](size_t i) {
        PyObject *task = rows[i].task;
        TaskState state = state_of(task);
        rows[i].state = state;
        int si = (int)state & 3;
        if (state_count[si]++ == 0) state_first[si] = (int64_t)i;
        if (state != TaskState::Pending) return;
        PyObject *waiter = a.waiter.get(task);
        if (waiter == Py_None) Py_CLEAR(waiter);
        rows[i].waiter = waiter;
        rows[i].waiter_type = waiter != nullptr ? Py_TYPE(waiter) : nullptr;
        PyObject *coro = a.coro.get(task);
        if (coro == nullptr) return;
        PyObject *leaf = nullptr;
        int k = walker.walk(coro, buf.data(), chain_depth, &leaf);
        Py_DECREF(coro);
        rows[i].leaf = leaf;
        if (k <= 0) return;
        // Tasks made together sit together in the rows and are usually
        // suspended at the same place: a chain equal to the previous row's
        // takes its id after a comparison of the frames, without hashing
        // and probing the table (~0.8 ms of 100,000 tasks, 3.11). The
        // previous chain's entry holds its code objects, so its copy in
        // `last` names live codes as long as the census does.
        if (k == last_n && last_id < StackTable::DROPPED && same_locs(buf.data(), last.data(), k)) {
            chains_.incref(last_id);
            rows[i].chain = last_id;
            return;
        }
        rows[i].chain = chains_.intern(buf.data(), k);
        last_n = k;
        last_id = rows[i].chain;
        std::copy(buf.begin(), buf.begin() + k, last.begin());
    };
    take_spare(group_of_, rows.size());
    for (size_t i = first; i < rows.size(); ++i) {
        if (i + AHEAD < rows.size()) {
            const char *next = (const char *)rows[i + AHEAD].task;
            for (int line = 0; line < 4; ++line) __builtin_prefetch(next + 64 * line);
        }
        // 3.14+: the coroutine of the task 4 rows ahead (whose task arrived
        // by now), its frame and value stack with it (they are inside the
        // coroutine object there): ~0.4 ms less of 100,000 tasks (11.9 ->
        // 11.5 ms, 3.14). Fetching the object that coroutine awaits, 2
        // rows ahead, cost more than it saved (12.2 ms).
        if (i + 4 < rows.size()) {
            if (const char *c = (const char *)cpython::coro_address(rows[i + 4].task))
                for (int line = 0; line < 5; ++line) __builtin_prefetch(c + 64 * line);
        }
        read_row(i);
        assign_group(i);
    }
}

void TaskCensus::assign_group(size_t i) {
    const CensusRow &r = rows[i];
    GroupKey k{r.creation, r.chain, r.waiter_type, r.state};
    // Tasks made together usually sit together in the rows (table order):
    // a row with the previous row's key skips the map.
    if (!group_of_.empty() && k == last_key_) {
        group_of_.push_back(group_of_.back());
        return;
    }
    last_key_ = k;
    group_of_.push_back(group_ids_.try_emplace(k, (uint32_t)group_ids_.size()).first->second);
}

// A second record for one task (not expected): its row among rows[from, to)
// gets the record the lookup by task finds, as collect() would use.
void TaskCensus::second_record(size_t from, size_t to, PyObject *task) {
    for (size_t j = from; j < to; ++j)
        if (rows[j].task == task) {
            set_record(rows[j], lookup_record(task));
            return;
        }
}

void TaskCensus::collect(PyObject *task_list, int chain_depth) {
    PyObject *seq = PySequence_Fast(task_list, "collect() needs a sequence of tasks");
    if (seq == nullptr) return;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    size_t first = rows.size();
    rows.reserve(first + (size_t)n);
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject *task = PySequence_Fast_GET_ITEM(seq, i);
        add_row(task, lookup_record(task));
    }
    Py_DECREF(seq);
    read_tasks(first, chain_depth);
}

bool TaskCensus::lists_cover(const std::function<bool(PyObject *)> &held) const {
    return listed_type_ != nullptr && cpython::lists_hold_only(unchecked_before_, held);
}

bool TaskCensus::collect_live(PyObject *weakref_set, PyObject *strong_sets, PyObject *more_sets, int chain_depth,
                              bool registry_untouched) {
    Tracker &t = tracker();
    const TaskTable &table = t.tasks;
    listed_type_ = more_sets != nullptr && more_sets != Py_None ? cpython::listed_task_type() : nullptr;
    unchecked_before_.clear();
    last_listed_ = nullptr;
    // The registry's weakrefs: a set is read in place after the records (see
    // step 2); anything else is copied first (callbacks may change it), as
    // making the copy may run the collector, and with it Python code, which
    // must not happen between reading the table and using what was read.
    bool in_place = weakref_set != Py_None && PyAnySet_CheckExact(weakref_set);
    PyObject *registry = nullptr;
    if (weakref_set != Py_None && !in_place && (registry = PySequence_List(weakref_set)) == nullptr) return false;
    size_t first = rows.size();
    trim_spare<CensusRow>(table.size());
    trim_spare<uint32_t>(table.size());
    trim_spare<const void *>(2 * table.size());
    take_spare(rows, first + table.size() + 16);
    // The tasks taken, and the weakrefs of their records (a registry's set
    // holds those same weakrefs for the tasks we track). Apart: once Python
    // code has run, a weakref's address may be another object's.
    // (Sized below, once it is known whether step 1 needs it.)
    AddrSet seen;
    size_t registered = in_place              ? (size_t)PySet_GET_SIZE(weakref_set)
                        : registry != nullptr ? (size_t)PyList_GET_SIZE(registry)
                                              : 0;
    // 3.10-3.13 register every task in asyncio's WeakSet, and registry_add
    // makes the weakref it stores the key of the task's record. When that set
    // has changed only through registry_add and its weakrefs' callbacks, and
    // it holds exactly as many entries as there are live tasks whose record
    // keys one of its weakrefs, it holds nothing else: it is counted, not
    // read (100,000 set entries probed against our weakrefs: ~1.5 ms of a
    // 12 ms census, 3.11). Anything else in it (a task made before install(),
    // or while tracking was off) makes the counts differ, and it is read.
    bool countable = in_place && registry_untouched && weakref_set == t.registry_data && t.registry_death_cb != nullptr;
    // Predicted from the sizes (the count itself is known after step 1): a
    // set that will be read needs our weakrefs collected on the way.
    bool expect_count = countable && registered == table.size();
    size_t ours_registered = 0;
    // The weakrefs are collected only for a registry large enough to pay
    // for them (3.10-3.13 register every task; 3.14+'s holds the few tasks
    // that are not native): without them each registry entry is read, and
    // `seen` still tells which tasks have a row.
    bool use_refs = registered > 256;
    AddrSet our_refs = use_refs && !expect_count ? AddrSet(table.size() + 64) : AddrSet();
    bool refs_taken = use_refs && !expect_count;
    // Where the registry will be counted, step 1 makes a row per live
    // record without `seen` (registry_add never records a task twice), and
    // a task from step 2 has a row already exactly when it has a live
    // record: ~0.7 ms less for 100,000 tasks (3.11).
    // 3.14+ keys the record of a C task by the task itself (no weakref: see
    // creation_hook.cpp), and track_task never records a task twice. Only a
    // record made by registry_add (an asyncio._register_task call) can be
    // a task's second one. With no registry entry, step 1 expects none and
    // makes no `seen`: 100,000 inserts into a 2 MB set and its clearing were
    // ~1.5 ms of a 12 ms census (3.14). It counts the rows whose record is
    // keyed by a weakref instead, and any such row means `seen` is made
    // after all (below).
    bool task_keyed = !expect_count && registered == 0;
    size_t weak_keyed = 0;
    bool use_seen = !expect_count && !task_keyed;
    if (use_seen) seen = AddrSet(table.size() + 64);
    // 1. The records, in slot order: a sequential read instead of a lookup
    // per task (task -> its weakref list -> our weakref -> the index ->
    // the record). The task of a live record is alive: the record goes when
    // its weakref's callback runs or the task is finalised; record_task
    // checks the weakref all the same. From here to the end of step 2's
    // registry loop no Python code runs: every address read stays valid.
    size_t slots = table.slots();
    // The weakref (read for the referent) and the task (its reference
    // count written, and on 3.14+ its list node read, two lines further:
    // ~0.7 ms less of 100,000 tasks) of the record 8 slots ahead are
    // fetched early: each is a cache miss otherwise.
    constexpr size_t AHEAD = 8;
    for (size_t i = 0; i < slots; ++i) {
        if (const CreationRecord *next = i + AHEAD < slots ? table.slot(i + AHEAD) : nullptr) {
            __builtin_prefetch(next->ref);
            __builtin_prefetch(next->task, 1);
            if (listed_type_ != nullptr) __builtin_prefetch(cpython::list_node(next->task));
        }
        const CreationRecord *r = table.slot(i);
        if (r == nullptr) continue;
        PyObject *task = record_task(*r);
        if (task == nullptr) continue;
        if (use_seen && !seen.insert(task)) {
            second_record(first, rows.size(), task);
            continue;
        }
        if (countable && r->ref != task && cpython::weakref_has_callback(r->ref, t.registry_death_cb))
            ++ours_registered;
        if (refs_taken) our_refs.insert(r->ref);
        if (task_keyed) weak_keyed += r->ref != task;
        add_row(task, r);
    }
    // 2. Tasks without a live record: created before tracking started, on a
    // loop taskleak does not track, or (during a collection) already buried.
    bool counted = countable && ours_registered == registered;
    registry_counted = counted;
    // `seen` from the rows made so far. A task with a second record (not
    // expected, as in step 1: eager tasks on 3.12 were checked to get one)
    // has a second row here: it goes, as step 1 would have dropped it.
    auto seen_from_rows = [&] {
        seen = AddrSet(rows.size() + 64);
        size_t keep = first;
        for (size_t j = first; j < rows.size(); ++j) {
            if (seen.insert(rows[j].task)) {
                rows[keep++] = rows[j];
                continue;
            }
            second_record(first, keep, rows[j].task);
            set_record(rows[j], nullptr);  // its stack reference
            Py_DECREF(rows[j].task);
        }
        rows.resize(keep);
        use_seen = true;
    };
    // A prediction missed.
    if (!use_seen && (task_keyed ? weak_keyed > 0 : !counted)) seen_from_rows();
    auto add_other = [&](PyObject *task) {
        if (task == nullptr || task == Py_None) return;
        if (use_seen) {
            if (seen.insert(task)) add_row(task, lookup_record(task));
            return;
        }
        const CreationRecord *r = lookup_record(task);
        if (r != nullptr && record_task(*r) == task) return;  // its row is made
        if (seen.insert(task)) add_row(task, r);
    };
    if (in_place && !counted && use_refs && !refs_taken) {
        // The prediction missed: our weakrefs, from a second pass over the
        // records (still no Python code since step 1).
        our_refs = AddrSet(table.size() + 64);
        refs_taken = true;
        for (size_t i = 0; i < slots; ++i)
            if (const CreationRecord *r = table.slot(i); r != nullptr && record_task(*r) != nullptr)
                our_refs.insert(r->ref);
    }
    // Our own weakrefs (a tracked task's) are known without a read.
    auto add_registered = [&](PyObject *wr) {
        if (!(refs_taken && our_refs.contains(wr)) && PyWeakref_Check(wr)) add_other(cpython::weakref_peek(wr));
    };
    if (in_place) {
        // Still no Python code since step 1: the set is as it was then.
        if (!counted) cpython::for_each_set_item(weakref_set, add_registered);
    } else if (registry != nullptr) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(registry); ++i) add_registered(PyList_GET_ITEM(registry, i));
        Py_DECREF(registry);
    }
    // Containers of tasks (an iterable of them): each item is held by
    // `items`, each task already taken by a row.
    auto add_containers = [&](PyObject *containers) {
        PyObject *it = PyObject_GetIter(containers);
        if (it == nullptr) return false;
        bool ok = true;
        while (ok) {
            PyObject *container = PyIter_Next(it);
            if (container == nullptr) {
                ok = !PyErr_Occurred();
                break;
            }
            if (PyAnySet_CheckExact(container)) {
                // A set (3.14+'s asyncio.all_tasks(loop): 100,000 tasks) is
                // read in place: nothing below runs Python code, and
                // `container` holds the set and so its items (a copy would
                // incref every task).
                cpython::for_each_set_item(container, add_other);
                Py_DECREF(container);
                continue;
            }
            PyObject *items = PySequence_List(container);
            Py_DECREF(container);
            if (items == nullptr) {
                ok = false;
                break;
            }
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); ++i) add_other(PyList_GET_ITEM(items, i));
            Py_DECREF(items);
        }
        Py_DECREF(it);
        return ok;
    };
    // The eager and current tasks, and whatever else the caller names.
    bool ok = add_containers(strong_sets);
    // 3.14+: the tasks taskleak has no record of live in asyncio's own lists
    // only. When those lists hold no task without a row (every live C task
    // is listed), `more_sets` is not called: asyncio.all_tasks(loop) copies
    // 100,000 tasks into a set (~9 ms, 3.14) where the rows' own links were
    // read with the rows. (The containers above are asyncio's built-in
    // dicts and sets: reading them runs no Python code, so the links read
    // since step 1 are the lists as they are.) Calling it runs Python code:
    // harmless now, as every address in `seen` is a task a row holds.
    // (Where `more_sets` is given there is no registry to count: either
    // `seen` was taken, or every record is keyed by its task and found by
    // address. Otherwise the lists are not trusted and asyncio is asked.)
    std::function<bool(PyObject *)> has_row = [&](PyObject *task) {
        if (seen.contains(task)) return true;
        if (use_seen || !task_keyed) return false;
        // Every record is keyed by its task: found by address, nothing read
        // (the lists' nodes name tasks that are only compared).
        const CreationRecord *r = t.tasks.find(task);
        return r != nullptr && record_task(*r) == task;
    };
    if (ok && more_sets != nullptr && more_sets != Py_None && !((use_seen || task_keyed) && lists_cover(has_row))) {
        // The containers are read with `seen` (a lookup per task would be
        // slower than the set): from the rows, if step 1 made none.
        if (!use_seen) seen_from_rows();
        PyObject *more = PyObject_CallNoArgs(more_sets);
        ok = more != nullptr && add_containers(more);
        Py_XDECREF(more);
    }
    if (!ok) return false;  // the rows made so far go with the census
    read_tasks(first, chain_depth);
    return true;
}

std::vector<std::vector<uint32_t>> TaskCensus::groups() const {
    // From the ids read_tasks gave each row (the last step of every
    // collection, so every row has one): 4 bytes a row instead of the rows
    // again (8 MB at 100,000 tasks, out of cache by the time a report
    // asks), and each group's list allocated once at its size.
    std::vector<uint32_t> size(group_ids_.size(), 0);
    for (uint32_t g : group_of_) ++size[g];
    std::vector<std::vector<uint32_t>> out(size.size());
    for (size_t g = 0; g < size.size(); ++g) out[g].reserve(size[g]);
    for (uint32_t i = 0; i < group_of_.size(); ++i) out[group_of_[i]].push_back(i);
    // Ids follow first appearance in row order: equal sizes keep it.
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
    // Siblings sit together in the rows: a row with the previous row's
    // parent counts there without a map lookup.
    uint32_t last_parent = 0;
    Seen *last_seen = nullptr;
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
            if (last_seen != nullptr && r.parent_serial == last_parent) {
                ++last_seen->count;
                continue;
            }
            auto it = parents.find(r.parent_serial);
            if (it == parents.end()) it = parents.emplace(r.parent_serial, Seen{1, pos}).first;
            else ++it->second.count;
            // unordered_map never moves its elements: the pointer stays valid.
            last_parent = r.parent_serial;
            last_seen = &it->second;
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
