#include "monitor/task_tally.hpp"
#include "cpython/weakref_list.hpp"
#include "tracking/tracker.hpp"
#include <algorithm>
#include <cstring>
#include <chrono>
#include <deque>
#include <pthread.h>
#include <thread>
#include <unordered_map>

namespace taskleak {

// Offsets learned by probe_task_fields(). Reading a field at a probed offset
// replaces two attribute lookups per task: at 100k tasks that is the
// difference between ~1 ms and several ms of GIL per sample. Every offset
// was verified against tasks in every state before it is used, and only
// objects of the probed type (or subclasses, which keep the base layout)
// are read that way.
static PyTypeObject *g_task_type = nullptr;
static Py_ssize_t g_state_off = -1;  // int: 0 pending, 1 cancelled, 2 finished
static Py_ssize_t g_coro_off = -1;   // PyObject *
static Py_ssize_t g_code_off = -1;   // in a coroutine: code pointer (low bits may tag)

// A pass in progress, and its thread: passes take turns (the cache is one,
// and most of a pass runs without the GIL).
static bool g_busy = false;
static unsigned long g_busy_thread = 0;

void tally_after_fork() {
    g_busy = false;
    tracker().tasks.forget_watch_after_fork();
}

// Tests only: a pause inside each word of the GIL-free read, so that
// another thread surely frees tasks while it runs (see test_task_tally.py).
static int64_t g_read_pause_ns = 0;
void set_tally_read_pause(int64_t ns) { g_read_pause_ns = ns > 0 ? ns : 0; }

const char *tally_mode() { return g_state_off >= 0 ? "fields" : "attributes"; }

TaskTally::~TaskTally() {
    for (GroupTally &g : groups) {
        Py_XDECREF(g.code);
        Py_XDECREF(g.example);
    }
}

static int read_int(PyObject *o, Py_ssize_t off) {
    int v;
    std::memcpy(&v, (char *)o + off, sizeof v);
    return v;
}

static PyObject *read_ptr(PyObject *o, Py_ssize_t off) {
    PyObject *v;
    std::memcpy(&v, (char *)o + off, sizeof v);
    return v;
}

static Py_ssize_t object_size(PyObject *o) {
    PyTypeObject *t = Py_TYPE(o);
    Py_ssize_t n = t->tp_basicsize;
    if (t->tp_itemsize) n += Py_SIZE(o) * t->tp_itemsize;
    return n;
}

static Py_ssize_t find_code_offset(PyObject *coro, PyObject *code) {
    Py_ssize_t end = object_size(coro) - (Py_ssize_t)sizeof(void *);
    for (Py_ssize_t off = (Py_ssize_t)sizeof(PyObject); off <= end; off += (Py_ssize_t)sizeof(void *)) {
        // 3.14+ keeps the frame's code as a tagged stack reference.
        if (((uintptr_t)read_ptr(coro, off) & ~(uintptr_t)3) == (uintptr_t)code) return off;
    }
    return -1;
}

bool probe_task_fields(PyObject *p1, PyObject *p2, PyObject *done, PyObject *cancelled, PyObject *coro1,
                       PyObject *coro2) {
    PyTypeObject *t = Py_TYPE(p1);
    if (Py_TYPE(p2) != t || Py_TYPE(done) != t || Py_TYPE(cancelled) != t) return false;
    if (!(t->tp_flags & Py_TPFLAGS_BASETYPE) || t->tp_itemsize != 0) return false;
    Py_ssize_t size = t->tp_basicsize;
    Py_ssize_t state = -1, coro = -1;
    int found = 0;
    for (Py_ssize_t off = (Py_ssize_t)sizeof(PyObject); off + (Py_ssize_t)sizeof(int) <= size; off += sizeof(int)) {
        if (read_int(p1, off) == 0 && read_int(p2, off) == 0 && read_int(cancelled, off) == 1 &&
            read_int(done, off) == 2) {
            state = off;
            ++found;
        }
    }
    if (found != 1) return false;
    found = 0;
    for (Py_ssize_t off = (Py_ssize_t)sizeof(PyObject); off + (Py_ssize_t)sizeof(void *) <= size;
         off += sizeof(void *)) {
        if (read_ptr(p1, off) == coro1 && read_ptr(p2, off) == coro2) {
            coro = off;
            ++found;
        }
    }
    if (found != 1) return false;
    // The coroutine's code: the first slot holding it, the same in two
    // coroutines of different functions, and still there once one finished.
    Py_ssize_t code = -1;
    if (PyCoro_CheckExact(coro1) && PyCoro_CheckExact(coro2)) {
        PyObject *c1 = PyObject_GetAttrString(coro1, "cr_code");
        PyObject *c2 = PyObject_GetAttrString(coro2, "cr_code");
        PyObject *dcoro = read_ptr(done, coro);
        PyObject *c3 = dcoro && PyCoro_CheckExact(dcoro) ? PyObject_GetAttrString(dcoro, "cr_code") : nullptr;
        PyErr_Clear();
        if (c1 && c2 && c3 && c1 != c2) {
            Py_ssize_t o = find_code_offset(coro1, c1);
            if (o >= 0 && o == find_code_offset(coro2, c2) && o == find_code_offset(dcoro, c3)) code = o;
        }
        Py_XDECREF(c1);
        Py_XDECREF(c2);
        Py_XDECREF(c3);
    }
    Py_XSETREF(g_task_type, (PyTypeObject *)Py_NewRef((PyObject *)t));
    g_state_off = state;
    g_coro_off = coro;
    g_code_off = code;
    return true;
}

namespace {
struct Key {
    uint32_t stack;
    PyObject *code;
    bool operator==(const Key &o) const { return stack == o.stack && code == o.code; }
};
struct KeyHash {
    size_t operator()(const Key &k) const {
        return (size_t)((((uint64_t)k.stack << 32) ^ (uint64_t)(uintptr_t)k.code) * 0x9E3779B97F4A7C15ull >> 17);
    }
};
}  // namespace

// 0 pending, 1 done (finished or cancelled), -1 unknown.
static int state_of(PyObject *task) {
    if (g_state_off >= 0 && PyObject_TypeCheck(task, g_task_type)) return read_int(task, g_state_off) == 0 ? 0 : 1;
    static PyObject *attr = PyUnicode_InternFromString("_state");
    PyObject *st = PyObject_GetAttr(task, attr);
    if (st == nullptr) {
        PyErr_Clear();
        return -1;
    }
    int out = PyUnicode_Check(st) && PyUnicode_CompareWithASCIIString(st, "PENDING") == 0 ? 0 : 1;
    Py_DECREF(st);
    return out;
}

// Borrowed: the code object of the task's coroutine, else the coroutine's
// type (a group per awaitable type). Never runs Python code for C tasks of
// native coroutines. Coroutines of other kinds (Cython's: grpc.aio runs
// every RPC in two of them) are asked for their cr_code, so that each of
// their functions is a group of its own, named by it, instead of one
// "coroutine" group per creation site.
static PyObject *code_of(PyObject *task) {
    PyObject *coro = nullptr;
    bool owned = false;
    if (g_coro_off >= 0 && PyObject_TypeCheck(task, g_task_type)) {
        coro = read_ptr(task, g_coro_off);
    } else {
        static PyObject *attr = PyUnicode_InternFromString("_coro");
        coro = PyObject_GetAttr(task, attr);
        if (coro == nullptr) PyErr_Clear();
        owned = coro != nullptr;
    }
    if (coro == nullptr) return (PyObject *)Py_TYPE(task);
    PyObject *out = (PyObject *)Py_TYPE(coro);
    if (PyCoro_CheckExact(coro)) {
        if (g_code_off >= 0) {
            out = (PyObject *)((uintptr_t)read_ptr(coro, g_code_off) & ~(uintptr_t)3);
        } else {
            static PyObject *attr = PyUnicode_InternFromString("cr_code");
            PyObject *c = PyObject_GetAttr(coro, attr);
            if (c == nullptr) PyErr_Clear();
            else {
                out = c;  // kept alive by the coroutine
                Py_DECREF(c);
            }
        }
    } else if (!PyGen_CheckExact(coro)) {
        static PyObject *attr = PyUnicode_InternFromString("cr_code");
        PyObject *c = PyObject_GetAttr(coro, attr);
        if (c == nullptr) PyErr_Clear();
        else {
            // Borrowed only if someone else holds it (the coroutine, its
            // module): a code object made for this call would be gone.
            if (PyCode_Check(c) && Py_REFCNT(c) > 1) out = c;
            Py_DECREF(c);
        }
    }
    if (owned) Py_DECREF(coro);
    return out;
}

// A task's state read while its loop's thread may be writing it (the
// pass's reads run without the GIL): one aligned int, torn never, stale at
// most by the write in flight.
static int read_state_racy(PyObject *task) {
    return __atomic_load_n((const int *)((const char *)task + g_state_off), __ATOMIC_RELAXED);
}

// What the pass remembers between samples, per table slot: the group of
// the task in it (creation stack and coroutine never change) and whether it
// was already done (done tasks stay done). A slot is reused by another task
// when its serial changes. So a sample reads nothing of a done task and one
// int of a pending one: memory traffic, not attribute lookups, is the cost.
namespace {
// The full story of a slot, read when its record changed (or for tasks
// whose state is read by attribute).
struct SlotInfo {  // value-initialized (all 0) by the vector
    uint32_t serial;
    uint32_t gid : 30;
    uint32_t done : 1;
    uint32_t fast : 1;  // a C task: state readable at the probed offset
};
static_assert(sizeof(SlotInfo) == 8);
// What a pass needs of a slot whose record did not change since the last
// pass (the table's touched bit is clear), so that it reads neither the
// record (40 bytes) nor SlotInfo: 16 bytes a slot instead of 48 (measured
// -15% at 100k tasks). What remains is the read of each pending task's
// state, one cache line per task, which a plain C loop over 100k heap
// objects takes about as long to do.
// `task` is valid exactly while the record is unchanged: a task's record
// goes (touching the slot) before the task is freed.
struct HotSlot {
    PyObject *task;         // nullptr: go through the record (or nothing to count)
    uint64_t born_ms : 39;  // CLOCK_MONOTONIC in ms: 17 years of uptime
    uint64_t has_born : 1;
    uint64_t gid : 22;
    uint64_t done : 1;
    uint64_t unused : 1;
};
static_assert(sizeof(HotSlot) == 16);
constexpr uint32_t HOT_MAX_GID = (1u << 22) - 1;
constexpr int64_t HOT_MAX_MS = (int64_t(1) << 39) - 1;
struct GroupKeyInfo {
    Key key;  // key.code is a strong reference
};
// Each group holds a reference on its creation stack: a stack id with no
// task left would otherwise be freed and reused for another stack, and the
// group (and its name) would be wrong. `generation` changes when the groups
// are dropped, so that names cached by id elsewhere are dropped too.
struct TallyCache {
    std::vector<SlotInfo> slots;
    std::vector<HotSlot> hot;
    std::vector<uint64_t> hot_bits;  // per slot: hot[i].task != nullptr
    std::vector<int64_t> born;       // per slot: its task's creation time, its lifetime when it goes
    std::vector<GroupKeyInfo> groups;
    std::unordered_map<Key, uint32_t, KeyHash> where;
    uint64_t generation = 1;
    uint64_t layout = 0;  // the table's layout the cache matches; 0: none (read every record)
    void clear() {
        ++generation;
        layout = 0;
        for (GroupKeyInfo &g : groups) {
            if (g.key.stack < StackTable::DROPPED) tracker().stacks.decref(g.key.stack);
            Py_DECREF(g.key.code);
        }
        groups.clear();
        where.clear();
        slots.assign(slots.size(), SlotInfo{});
        hot.assign(hot.size(), HotSlot{});
        hot_bits.assign(hot_bits.size(), 0);
    }
    void resize(size_t n) {
        slots.resize(n);
        hot.resize(n);
        hot_bits.resize((n >> 6) + 1, 0);
        born.resize(n, -1);
    }
    void set_hot(size_t i, const HotSlot &h) {
        hot[i] = h;
        const uint64_t bit = uint64_t(1) << (i & 63);
        if (h.task != nullptr) hot_bits[i >> 6] |= bit;
        else hot_bits[i >> 6] &= ~bit;
    }
};
TallyCache &cache() {
    static TallyCache *c = new TallyCache();  // never destroyed: lives as long as the process
    return *c;
}
}  // namespace

static uint32_t group_id(TallyCache &c, uint32_t stack, PyObject *code) {
    Key k{stack, code};
    auto it = c.where.find(k);
    if (it != c.where.end()) return it->second;
    uint32_t gid = (uint32_t)c.groups.size();
    if (stack < StackTable::DROPPED) tracker().stacks.incref(stack);
    c.groups.push_back(GroupKeyInfo{Key{stack, Py_NewRef(code)}});
    c.where.emplace(k, gid);
    return gid;
}

int age_bucket(int64_t ms) {
    if (ms < 1) return 0;
    const int k = 63 - __builtin_clzll((unsigned long long)ms);
    const int half = k > 0 ? (int)((ms >> (k - 1)) & 1) : 0;
    const int b = 1 + 2 * k + half;
    return b < AGE_BUCKETS ? b : AGE_BUCKETS - 1;
}

bool tally_tasks(TaskTally &out, int64_t max_hold_ns, const std::vector<StaleAfter> &stale_after) {
    Tracker &t = tracker();
    TallyCache &c = cache();
    // A fork while some thread's pass reads without the GIL leaves the child
    // with a pass nobody will finish (and maybe a word marked as being read).
    static const bool at_fork = pthread_atfork(nullptr, nullptr, tally_after_fork) == 0;
    (void)at_fork;
    const unsigned long me = PyThread_get_thread_ident();
    if (g_busy && g_busy_thread == me) return false;  // Python code run by a pass asked for another
    while (g_busy) {
        // Another monitor's pass: it needs the GIL to finish.
        Py_BEGIN_ALLOW_THREADS
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        Py_END_ALLOW_THREADS
    }
    g_busy = true;
    g_busy_thread = me;
    // Keys of groups that no longer have tasks accumulate; start afresh
    // past a bound (the next pass recomputes every slot once).
    if (c.groups.size() > 8192) c.clear();
    struct Acc {
        uint32_t pending = 0, done = 0;
        int64_t oldest = INT64_MAX;     // exact, from slots read through their record
        int64_t oldest_ms = INT64_MAX;  // from hot slots; the exact time is looked up once at the end
        size_t oldest_slot = SIZE_MAX;
        size_t example_slot = SIZE_MAX;
        uint32_t example_serial = 0;
        bool example_pending = false;
        bool example_stale = false;
        int64_t example_born_ms = INT64_MAX;  // of a pending example; INT64_MAX: unknown
        // Allocated on first use: the cache may know thousands of groups,
        // most with no task now. A deque keeps them where they are.
        uint32_t *ages = nullptr, *lifetimes = nullptr;
    };
    std::vector<Acc> acc(c.groups.size());
    std::deque<AgeHistogram> hists;
    auto hist = [&hists](uint32_t *&h) -> uint32_t * {
        if (h == nullptr) {
            hists.emplace_back();
            hists.back().fill(0);
            h = hists.back().data();
        }
        return h;
    };
    // A task seen pending at an earlier pass that is done or gone now: its
    // lifetime (to this pass: an upper bound by at most one interval).
    auto record_lifetime = [&](uint32_t gid, int64_t created, int64_t now) {
        if (created < 0 || gid >= c.groups.size()) return;
        if (acc.size() < c.groups.size()) acc.resize(c.groups.size());
        ++hist(acc[gid].lifetimes)[age_bucket((now - created) / 1000000)];
    };
    const int64_t start = monotonic_ns();
    const int64_t start_ms = start / 1000000;
    int64_t hold_start = start;
    uint64_t finishing = 0;  // live, pending and done are summed from `acc` at the end
    // Per group id: tasks born at or before this millisecond are stale
    // (INT64_MIN: no threshold given). Groups made during the pass have none;
    // with no threshold at all (most passes) it stays empty.
    std::vector<int64_t> stale_born;
    if (!stale_after.empty()) stale_born.assign(c.groups.size(), INT64_MIN);
    for (const StaleAfter &sa : stale_after) {
        auto it = c.where.find(Key{sa.stack, sa.code});
        if (it != c.where.end() && it->second < stale_born.size()) stale_born[it->second] = start_ms - sa.ms;
    }
    // A group's example: its newest stale task, else its oldest pending task,
    // else any task of it. A stale alert then describes a task that is
    // stale, not a request that came in a moment ago beside the ones that
    // hung, nor a keep-alive connection as old as the process beside them.
    auto note_example = [&](Acc &a, size_t slot, bool pending, int64_t born_ms, uint32_t gid) {
        if (pending) {
            const bool stale = born_ms != INT64_MAX && gid < stale_born.size() && born_ms <= stale_born[gid];
            if (stale) {
                if (a.example_stale && born_ms <= a.example_born_ms) return;
            } else if (a.example_stale || (a.example_pending && born_ms >= a.example_born_ms)) {
                return;
            }
            a.example_stale = stale;
            a.example_born_ms = born_ms;
        } else if (a.example_slot != SIZE_MAX) {
            return;
        }
        a.example_slot = slot;
        a.example_serial = c.slots[slot].serial;
        a.example_pending = pending;
    };
    const bool fast_state = g_state_off >= 0;

    // A slot whose record did not change since the last pass, from its hot
    // copy; false if it must be read through its record after all.
    auto visit_hot = [&](size_t i) -> bool {
        HotSlot &h = c.hot[i];
        if (h.task == nullptr) return c.slots[i].serial != 0;  // else a free slot
        if (h.gid >= acc.size()) return true;
        Acc &a = acc[h.gid];
        // The common case: a C task seen pending before and pending still;
        // nothing but its state is read. A done one is not read at all.
        bool pending = false;
        if (h.done) {
            ++a.done;
        } else if (read_state_racy(h.task) == 0) {
            pending = true;
            ++a.pending;
        } else {
            // Pending at an earlier pass, finished since.
            record_lifetime(h.gid, c.born[i], start);
            c.slots[i].done = true;
            h.done = 1;
            ++finishing;
        }
        const int64_t born = h.has_born ? (int64_t)h.born_ms : INT64_MAX;
        if (h.has_born) {
            if (pending) ++hist(a.ages)[age_bucket(start_ms - born)];
            if (born < a.oldest_ms) {
                a.oldest_ms = born;
                a.oldest_slot = i;
            }
        }
        note_example(a, i, pending, born, h.gid);
        return false;
    };

    // Slot i's hot copy, after its record was read.
    auto refresh_hot = [&](size_t i, PyObject *task, int64_t created) {
        const SlotInfo &k = c.slots[i];
        HotSlot h{};
        if (k.serial != 0 && (k.fast || k.done) && k.gid <= HOT_MAX_GID) {
            h.task = task;
            h.gid = k.gid;
            h.done = k.done;
            if (created >= 0 && created / 1000000 <= HOT_MAX_MS) {
                h.born_ms = (uint64_t)(created / 1000000);
                h.has_born = 1;
            }
        }
        c.set_hot(i, h);
    };

    // The table's layout the copies are good for. After one compaction
    // since the last pass, the copies move with their slots; a task in a
    // slot that went is gone. Otherwise (the first pass, several changes)
    // every slot goes through its record, and done tasks count as finishing
    // for a pass.
    const uint64_t layout = t.tasks.layout();
    if (c.layout != 0 && layout == c.layout + 1) {
        const std::vector<uint32_t> &from = t.tasks.moved_from();
        const size_t size = std::max(c.slots.size(), from.size() + from.size() / 4 + 64);
        std::vector<SlotInfo> slots(size);
        std::vector<HotSlot> hot(size);
        std::vector<int64_t> born(size, -1);
        std::vector<bool> carried(c.slots.size(), false);
        for (size_t k = 0; k < from.size(); ++k) {
            const size_t j = from[k];
            if (j >= c.slots.size()) continue;  // a slot the cache never saw
            slots[k] = c.slots[j];
            hot[k] = c.hot[j];
            born[k] = c.born[j];
            carried[j] = true;
        }
        for (size_t j = 0; j < c.slots.size(); ++j)
            if (!carried[j] && c.slots[j].serial != 0 && !c.slots[j].done)
                record_lifetime(c.slots[j].gid, c.born[j], start);
        c.slots.swap(slots);
        c.hot.swap(hot);
        c.born.swap(born);
        c.hot_bits.assign((size + 63) >> 6, 0);
        for (size_t k = 0; k < size; ++k)
            if (c.hot[k].task != nullptr) c.hot_bits[k >> 6] |= uint64_t(1) << (k & 63);
        c.layout = layout;
    }
    bool every_record = layout != c.layout;
    bool moved = false;
    uint64_t touched = 0;  // the current word's bits

    // Slot i through its record: it changed, its task is of a class whose
    // state is read by attribute, or the layout changed. May run Python code.
    auto visit_record = [&](size_t i) {
        const CreationRecord *r = t.tasks.slot(i);
        c.set_hot(i, HotSlot{});
        {
            SlotInfo &k = c.slots[i];
            if (k.serial != 0 && (r == nullptr || r->serial != k.serial)) {
                // Its task was freed since the previous pass.
                if (!k.done) record_lifetime(k.gid, c.born[i], start);
                k.serial = 0;
            }
        }
        if (r == nullptr) return;
        // A record in the table is a live task: the record goes in the
        // weak reference's callback, which runs before the task is freed.
        PyObject *task = r->task;
        const uint32_t serial = r->serial, stack = r->stack;
        const int64_t created = r->created_ns;
        const SlotInfo known = c.slots[i];
        int st;
        // Done at the previous pass too: a task that finished since then may
        // still be referenced only by its done callbacks, queued on its loop
        // for this iteration (asyncio holds the task in each handle until it
        // runs). Counting those as retained would make a busy, clean service
        // look like a leak; a task still referenced one sample later is not
        // waiting for its callbacks.
        const bool done_before = known.serial == serial && known.done;
        if (done_before) {
            st = 1;
        } else if (known.serial == serial && known.fast) {
            st = read_int(task, g_state_off) == 0 ? 0 : 1;
        } else {
            // First sight of this task, or a task of another class: the
            // slow path, which may run Python code - hold the task over it.
            // record_task: through the weakref, or (3.14+, tasks whose
            // death reaches the type's finalizer) the record's own pointer.
            task = record_task(*r);
            if (task == nullptr) return;
            Py_INCREF(task);
            st = state_of(task);
            PyObject *code = st < 0 ? nullptr : code_of(task);
            bool fast = fast_state && g_coro_off >= 0 && PyObject_TypeCheck(task, g_task_type);
            if (code != nullptr) {
                c.slots[i] = SlotInfo{serial, group_id(c, stack, code), false, fast};
                c.born[i] = created;
            }
            Py_DECREF(task);
            // Python code may have run: tasks freed or created, slots of this
            // word touched again, even the slots moved (then `r` is stale).
            // Read, not taken: a bit for a slot this pass will not come
            // back to (an earlier one in the word, or one deferred to the
            // GIL-free read) must still be set for the next pass, which
            // would otherwise trust a copy whose task is gone.
            touched |= t.tasks.touched_word(i >> 6);
            if (t.tasks.layout() != layout) moved = every_record = true;
            if (every_record) touched = ~uint64_t(0);
            if (code == nullptr || t.tasks.slot(i) != r || r->serial != serial || c.slots[i].serial != serial) return;
            if (acc.size() < c.groups.size()) acc.resize(c.groups.size());
        }
        SlotInfo &s2 = c.slots[i];
        if (s2.gid >= acc.size()) acc.resize(c.groups.size());  // groups added by another pass
        if (s2.gid >= acc.size()) return;
        if (st != 0 && !s2.done) {
            // Pending at an earlier pass, finished since.
            if (known.serial == serial) record_lifetime(s2.gid, created, start);
            s2.done = true;
        }
        refresh_hot(i, task, created);
        Acc &a = acc[s2.gid];
        if (st == 0) {
            ++a.pending;
            if (created >= 0) ++hist(a.ages)[age_bucket((start - created) / 1000000)];
        } else if (done_before) {
            ++a.done;
        } else {
            ++finishing;
        }
        if (created >= 0 && created < a.oldest) a.oldest = created;
        note_example(a, i, st == 0, created >= 0 ? created / 1000000 : INT64_MAX, s2.gid);
    };

    // Phase 1, with the GIL: a word (64 slots) at a time, every slot whose
    // record changed (the table's touched bits) or whose task is read by
    // attribute goes through its record. The rest - at a steady state
    // nearly every slot - only needs its task's state read, which is left
    // for phase 2. The GIL is dropped only between words, so a word's bits
    // are good for its slots while we hold it (Python code run for one of
    // them adds what it touched).
    std::vector<uint64_t> deferred;  // per word: slots for phase 2
    bool any_deferred = false;
    t.tasks.open_watch(t.tasks.slots());
    size_t dropped_at = 0;
    for (size_t i = 0;;) {
        size_t n = t.tasks.slots();
        if (i >= n) break;
        if (max_hold_ns > 0 && (i & 255) == 0 && i > dropped_at) {
            int64_t now = monotonic_ns();
            if (now - hold_start >= max_hold_ns) {
                out.gil_ns += now - hold_start;
                out.max_hold_ns = std::max(out.max_hold_ns, now - hold_start);
                ++out.holds;
                Py_BEGIN_ALLOW_THREADS
                Py_END_ALLOW_THREADS
                hold_start = monotonic_ns();
                dropped_at = i;
                continue;  // the table may have changed: look again
            }
        }
        if (t.tasks.layout() != layout) moved = every_record = true;
        const size_t w = i >> 6;
        touched = t.tasks.take_touched(w);
        if (every_record) touched = ~uint64_t(0);
        if (c.slots.size() < n) c.resize(n + n / 4 + 64);
        t.tasks.watch_slots(n);
        if (deferred.size() <= w) deferred.resize(w + w / 4 + 16, 0);
        const size_t word_end = (i | 63) + 1;
        const uint64_t in_table = n >= word_end ? ~uint64_t(0) : (uint64_t(1) << (n - i)) - 1;
        // Defer only tasks whose state is read at the probed offset (their
        // hot copy says so: done or fast).
        const uint64_t defer = every_record || !fast_state ? 0 : c.hot_bits[w] & ~touched & in_table;
        deferred[w] = defer;
        any_deferred |= defer != 0;
        if (defer == in_table) {
            i = word_end;
            continue;
        }
        size_t end = std::min(n, word_end);
        for (; i < end; ++i) {
            if ((defer >> (i & 63)) & 1) continue;
            if (((touched >> (i & 63)) & 1) == 0 && !visit_hot(i)) continue;
            visit_record(i);
            end = std::min(t.tasks.slots(), word_end);  // Python code may have run
        }
        i = word_end;
    }

    // Phase 2, without the GIL: read the state of each deferred slot's task.
    // Freeing a task takes its record out of the table first, which marks
    // the slot gone and waits while we are in its word (TaskTable's watch),
    // so a task whose slot is unmarked when we enter its word is not freed
    // before we leave it. Gone slots are left to phase 3. Nothing here
    // calls into Python.
    std::vector<uint64_t> skipped;
    if (any_deferred) {
        if (acc.size() < c.groups.size()) acc.resize(c.groups.size());
        skipped.assign(deferred.size(), 0);
        const int64_t now = monotonic_ns();
        out.gil_ns += now - hold_start;
        out.max_hold_ns = std::max(out.max_hold_ns, now - hold_start);
        ++out.holds;
        Py_BEGIN_ALLOW_THREADS
        const int64_t read_start = monotonic_ns();
        for (size_t w = 0; w < deferred.size(); ++w) {
            if (deferred[w] == 0) continue;
            const uint64_t gone = t.tasks.begin_word(w) & deferred[w];
            if (g_read_pause_ns != 0) std::this_thread::sleep_for(std::chrono::nanoseconds(g_read_pause_ns));
            skipped[w] = gone;
            out.gone_during_read += (uint64_t)__builtin_popcountll(gone);
            uint64_t todo = deferred[w] & ~gone;
#if defined(__GNUC__)
            // Pending tasks cost one read of their state: ask for all of
            // the word's at once. A prefetch never faults.
            for (uint64_t b = todo; b != 0; b &= b - 1)
                __builtin_prefetch((char *)c.hot[(w << 6) + __builtin_ctzll(b)].task + g_state_off);
#endif
            for (; todo != 0; todo &= todo - 1) visit_hot((w << 6) + __builtin_ctzll(todo));
            t.tasks.end_word();
        }
        out.read_ns = monotonic_ns() - read_start;
        Py_END_ALLOW_THREADS
        hold_start = monotonic_ns();
    }

    // Phase 3, with the GIL: the deferred slots whose record went meanwhile.
    if (t.tasks.layout() != layout) moved = true;
    for (size_t w = 0; w < skipped.size(); ++w)
        for (uint64_t b = skipped[w]; b != 0; b &= b - 1) {
            const size_t i = (w << 6) + __builtin_ctzll(b);
            if (i < c.slots.size()) visit_record(i);
        }
    t.tasks.close_watch();
    c.layout = moved ? 0 : layout;
    for (const Acc &a : acc) {
        out.pending += a.pending;
        out.done += a.done;
    }
    out.finishing = finishing;
    out.live = out.pending + out.done + out.finishing;
    for (size_t gid = 0; gid < acc.size() && gid < c.groups.size(); ++gid) {
        const Acc &a = acc[gid];
        if (a.pending == 0 && a.done == 0 && a.lifetimes == nullptr) continue;
        GroupTally g{c.groups[gid].key.stack, Py_NewRef(c.groups[gid].key.code)};
        if (a.ages != nullptr) {
            std::copy(a.ages, a.ages + AGE_BUCKETS, g.ages.begin());
            g.has_ages = true;
        }
        if (a.lifetimes != nullptr) {
            std::copy(a.lifetimes, a.lifetimes + AGE_BUCKETS, g.lifetimes.begin());
            g.has_lifetimes = true;
        }
        g.pending = a.pending;
        g.done = a.done;
        int64_t oldest = a.oldest;
        if (a.oldest_slot < c.born.size() && c.born[a.oldest_slot] >= 0)
            oldest = std::min(oldest, c.born[a.oldest_slot]);
        g.oldest_ns = oldest == INT64_MAX ? -1 : oldest;
        const CreationRecord *r = a.example_slot == SIZE_MAX ? nullptr : t.tasks.slot(a.example_slot);
        if (r != nullptr && r->serial == a.example_serial) {
            // The example goes to Python as a weak reference: the record's
            // own, or a new one where the record is keyed by the task itself.
            if (r->ref != r->task) {
                g.example = Py_NewRef(r->ref);
            } else if (PyObject *task = record_task(*r)) {
                g.example = PyWeakref_NewRef(task, nullptr);
                if (g.example == nullptr) PyErr_Clear();
            }
        }
        g.example_pending = a.example_pending;
        out.groups.push_back(g);
    }
    int64_t end = monotonic_ns();
    out.gil_ns += end - hold_start;
    out.max_hold_ns = std::max(out.max_hold_ns, end - hold_start);
    ++out.holds;
    out.wall_ns = end - start;
    out.generation = c.generation;
    g_busy = false;
    return true;
}

}  // namespace taskleak
