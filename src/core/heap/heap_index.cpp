#include "heap/heap_index.hpp"
#include "cpython/heap_walk.hpp"
#include "cpython/weakref_list.hpp"
#include <chrono>

namespace taskleak {

namespace {

constexpr uint32_t EMPTY = UINT32_MAX;             // parent_: not reached yet
constexpr uint32_t IS_TARGET = UINT32_MAX - 1;     // parent_: this node is the target
constexpr uint32_t HOLDS_TARGET = UINT32_MAX - 2;  // parent_: refers to an unindexed target

bool is_generator_like(PyObject *o) { return PyGen_Check(o) || PyCoro_CheckExact(o) || PyAsyncGen_CheckExact(o); }

struct Contains {
    PyObject *wanted;
    bool found;
};
int visit_contains(PyObject *o, void *arg) {
    auto *c = (Contains *)arg;
    if (o == c->wanted) {
        c->found = true;
        return 1;  // stops the traversal
    }
    return 0;
}

// Does `holder` refer to `child` right now? Only tracked objects are asked:
// the collector never traverses untracked ones, and neither do we.
bool refers_to(PyObject *holder, PyObject *child) {
    if (!PyObject_IS_GC(holder) || !PyObject_GC_IsTracked(holder)) return false;
    traverseproc tp = Py_TYPE(holder)->tp_traverse;
    if (tp == nullptr) return false;
    Contains c{child, false};
    tp(holder, visit_contains, &c);
    return c.found;
}

struct EdgeSink {
    const PtrTable *table;
    std::vector<uint32_t> *dst;
};
int visit_edge(PyObject *o, void *arg) {
    auto *s = (EdgeSink *)arg;
    uint32_t slot = s->table->find(o);
    if (slot != PtrTable::NOT_FOUND) s->dst->push_back(slot);
    return 0;
}

}  // namespace

HeapIndex::~HeapIndex() { clear(); }

void HeapIndex::clear() {
    for (PyObject *r : type_refs_) Py_XDECREF(r);
    type_refs_.clear();
    type_table_.reset(0);
    table_.reset(0);
    flags_.clear();
    rev_off_.clear();
    rev_src_.clear();
    parent_.clear();
    touched_.clear();
    nodes_ = 0;
}

size_t HeapIndex::bytes() const {
    return sizeof(*this) + table_.bytes() + flags_.capacity() + rev_off_.capacity() * 4 + rev_src_.capacity() * 4 +
           type_table_.bytes() + type_refs_.capacity() * sizeof(PyObject *) + parent_.capacity() * 4 +
           touched_.capacity() * 4;
}

bool HeapIndex::build(size_t max_objects) {
    auto t0 = std::chrono::steady_clock::now();
    clear();
    // Pass 1: the addresses. Classes and generators get a temporary strong
    // reference (allowed during the walk; allocating is not) because they
    // need Python calls after it: weak references to classes, the
    // running-state of generators.
    std::vector<PyObject *> objs;
    std::vector<PyObject *> types, gens;
    bool too_many = false;
    bool ok = cpython::visit_gc_objects([&](PyObject *o) {
        if (objs.size() >= max_objects) {
            too_many = true;
            return false;
        }
        objs.push_back(o);
        if (PyType_Check(o)) {
            Py_INCREF(o);
            types.push_back(o);
        } else if (is_generator_like(o)) {
            Py_INCREF(o);
            gens.push_back(o);
        }
        return true;
    });
    auto release = [&]() {
        for (PyObject *o : types) Py_DECREF(o);
        for (PyObject *o : gens) Py_DECREF(o);
    };
    if (!ok || too_many) {
        release();
        if (too_many)
            PyErr_Format(PyExc_MemoryError,
                         "taskleak: the heap has more than %zu GC-tracked objects; the reverse index "
                         "would need ~%zu MB. Pass a larger max_objects to index it anyway.",
                         max_objects, max_objects * 40 / 1000000);
        return false;
    }
    // Until the end of pass 3 no Python code runs and no Python object is
    // allocated, so every address in `objs` stays a live object.
    table_.reset(objs.size());
    std::vector<uint32_t> slot_of(objs.size());
    for (size_t i = 0; i < objs.size(); ++i) slot_of[i] = table_.insert(objs[i]);
    nodes_ = objs.size();

    // Pass 2: forward edges, grouped by source, to tracked objects only
    // (untracked objects cannot hold anything tracked).
    std::vector<uint32_t> fwd_off(objs.size() + 1);
    std::vector<uint32_t> fwd_dst;
    fwd_dst.reserve(objs.size() * 3);
    EdgeSink sink{&table_, &fwd_dst};
    for (size_t i = 0; i < objs.size(); ++i) {
        if (fwd_dst.size() > (size_t)UINT32_MAX - 4096) {
            release();
            clear();
            PyErr_SetString(PyExc_MemoryError, "taskleak: more than 2**32 references in the heap");
            return false;
        }
        fwd_off[i] = (uint32_t)fwd_dst.size();
        traverseproc tp = Py_TYPE(objs[i])->tp_traverse;
        if (tp != nullptr) tp(objs[i], visit_edge, &sink);
    }
    fwd_off[objs.size()] = (uint32_t)fwd_dst.size();

    // Pass 3: transpose into referrer lists (counting sort by target).
    size_t cap = table_.capacity();
    rev_off_.assign(cap + 1, 0);
    for (uint32_t d : fwd_dst) ++rev_off_[d + 1];
    for (size_t s = 0; s < cap; ++s) rev_off_[s + 1] += rev_off_[s];
    rev_src_.resize(fwd_dst.size());
    {
        std::vector<uint32_t> pos(rev_off_.begin(), rev_off_.end() - 1);
        for (size_t i = 0; i < objs.size(); ++i)
            for (uint32_t e = fwd_off[i]; e < fwd_off[i + 1]; ++e) rev_src_[pos[fwd_dst[e]]++] = slot_of[i];
    }
    std::vector<uint32_t>().swap(fwd_dst);
    flags_.assign(cap, 0);

    // Python calls are allowed again; the index no longer depends on the
    // objects staying alive.
    static PyObject *names[3] = {PyUnicode_InternFromString("gi_running"), PyUnicode_InternFromString("cr_running"),
                                 PyUnicode_InternFromString("ag_running")};
    for (PyObject *g : gens) {
        PyObject *name = PyCoro_CheckExact(g) ? names[1] : PyAsyncGen_CheckExact(g) ? names[2] : names[0];
        PyObject *r = name ? PyObject_GetAttr(g, name) : nullptr;
        if (r == nullptr) {
            PyErr_Clear();
            continue;
        }
        if (r == Py_True) flags_[table_.find(g)] |= RUNNING_GEN;
        Py_DECREF(r);
    }
    type_table_.reset(types.size());
    type_refs_.assign(type_table_.capacity(), nullptr);
    for (PyObject *t : types) {
        PyObject *wr = PyWeakref_NewRef(t, nullptr);
        if (wr == nullptr) {
            PyErr_Clear();
            continue;  // not a root then: it could not be proven alive later
        }
        type_refs_[type_table_.insert(t)] = wr;
        flags_[table_.find(t)] |= IS_TYPE;
    }
    release();
    build_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return true;
}

bool HeapIndex::type_alive(PyObject *type) const {
    uint32_t s = type_table_.find(type);
    if (s == PtrTable::NOT_FOUND || type_refs_[s] == nullptr) return false;
    return cpython::weakref_peek(type_refs_[s]) == type;
}

bool HeapIndex::validate(const std::vector<PyObject *> &chain) const {
    for (size_t i = 0; i + 1 < chain.size(); ++i)
        if (!refers_to(chain[i], chain[i + 1])) return false;
    return true;
}

bool HeapIndex::who_holds(PyObject *target, const std::vector<PyObject *> &roots, const std::vector<PyObject *> &stops,
                          int max_depth, int max_paths, std::vector<HolderChain> *out, bool *stale, bool live_seed) {
    *stale = false;
    if (max_paths <= 0) return true;
    PtrTable root_map, stop_map;
    root_map.reset(roots.size());
    std::vector<int> root_no(root_map.capacity(), -1);
    for (size_t i = 0; i < roots.size(); ++i) {
        bool added;
        uint32_t s = root_map.insert(roots[i], &added);
        if (added) root_no[s] = (int)i;
    }
    stop_map.reset(stops.size());
    for (PyObject *s : stops) stop_map.insert(s);

    auto emit = [&](int root, std::vector<PyObject *> chain) {
        if (!validate(chain)) {
            *stale = true;
            return;
        }
        for (PyObject *o : chain) Py_INCREF(o);
        out->push_back(HolderChain{root, std::move(chain)});
    };
    // A root holding the target directly (a frame's local variable).
    uint32_t r0 = root_map.find(target);
    if (r0 != PtrTable::NOT_FOUND) emit(root_no[r0], {target});

    if (parent_.size() != table_.capacity()) parent_.assign(table_.capacity(), EMPTY);
    std::vector<uint32_t> frontier, next, unrooted;
    std::vector<PyObject *> live_seeds;  // strong refs, released below
    uint32_t tslot = table_.find(target);
    int depth = 0;
    if (tslot != PtrTable::NOT_FOUND && !live_seed) {
        parent_[tslot] = IS_TARGET;
        touched_.push_back(tslot);
        frontier.push_back(tslot);
    } else {
        // Not indexed (untracked, or born after the build): one live pass
        // finds its direct referrers, the index does the rest.
        bool ok = cpython::visit_gc_objects([&](PyObject *o) {
            if (refers_to(o, target)) {
                Py_INCREF(o);
                live_seeds.push_back(o);
            }
            return true;
        });
        if (!ok) return false;
        depth = 1;
        for (PyObject *s : live_seeds) {
            if (stop_map.find(s) != PtrTable::NOT_FOUND) continue;
            uint32_t rs = root_map.find(s);
            if (rs != PtrTable::NOT_FOUND) {
                if ((int)out->size() < max_paths) emit(root_no[rs], {s, target});
                continue;
            }
            uint32_t slot = table_.find(s);
            if (slot != PtrTable::NOT_FOUND && parent_[slot] == EMPTY) {
                parent_[slot] = HOLDS_TARGET;
                touched_.push_back(slot);
                frontier.push_back(slot);
            }
        }
    }
    auto chain_from = [&](uint32_t u) {
        std::vector<PyObject *> chain;
        for (;;) {
            chain.push_back(table_.key(u));
            uint32_t p = parent_[u];
            if (p == IS_TARGET) break;
            if (p == HOLDS_TARGET) {
                chain.push_back(target);
                break;
            }
            u = p;
        }
        return chain;
    };
    for (; !frontier.empty() && (int)out->size() < max_paths; ++depth) {
        next.clear();
        for (uint32_t u : frontier) {
            if ((int)out->size() >= max_paths) break;
            PyObject *p = table_.key(u);
            if (u != tslot) {
                if (stop_map.find(p) != PtrTable::NOT_FOUND) continue;
                uint32_t rs = root_map.find(p);
                if (rs != PtrTable::NOT_FOUND) {
                    emit(root_no[rs], chain_from(u));
                    continue;
                }
                if ((flags_[u] & IS_TYPE) && type_alive(p)) {
                    emit(ROOT_CLASS, chain_from(u));
                    continue;
                }
                if (flags_[u] & RUNNING_GEN) continue;  // its locals are a running frame's
            }
            if (depth >= max_depth) continue;
            uint32_t b = rev_off_[u], e = rev_off_[u + 1];
            if (b == e && u != tslot) unrooted.push_back(u);
            for (; b < e; ++b) {
                uint32_t r = rev_src_[b];
                if (parent_[r] != EMPTY) {
                    // Already reached through another object: a second path
                    // if it is a root (one container in a module and a set in
                    // the same module are two findings, not one).
                    if (r != parent_[u] && parent_[r] != u && (int)out->size() < max_paths) {
                        PyObject *rp = table_.key(r);
                        uint32_t rs = root_map.find(rp);
                        int root = rs != PtrTable::NOT_FOUND                 ? root_no[rs]
                                   : (flags_[r] & IS_TYPE) && type_alive(rp) ? ROOT_CLASS
                                                                             : -3;
                        if (root != -3 && stop_map.find(rp) == PtrTable::NOT_FOUND) {
                            std::vector<PyObject *> chain{rp};
                            for (PyObject *o : chain_from(u)) chain.push_back(o);
                            emit(root, std::move(chain));
                        }
                    }
                    continue;
                }
                parent_[r] = u;
                touched_.push_back(r);
                next.push_back(r);
            }
        }
        frontier.swap(next);
    }
    // Nothing rooted: report what the search ended at (objects nothing
    // tracked refers to: held from C, or garbage in a cycle). Their liveness
    // is unknown, so one live pass checks the addresses first.
    if (out->empty() && !unrooted.empty()) {
        if (unrooted.size() > (size_t)max_paths) unrooted.resize((size_t)max_paths);
        PtrTable want;
        want.reset(unrooted.size());
        for (uint32_t u : unrooted) want.insert(table_.key(u));
        std::vector<PyObject *> alive;
        bool ok = cpython::visit_gc_objects([&](PyObject *o) {
            if (want.find(o) != PtrTable::NOT_FOUND) {
                Py_INCREF(o);
                alive.push_back(o);
            }
            return true;
        });
        if (ok) {
            PtrTable alive_set;
            alive_set.reset(alive.size());
            for (PyObject *o : alive) alive_set.insert(o);
            for (uint32_t u : unrooted)
                if (alive_set.find(table_.key(u)) != PtrTable::NOT_FOUND) emit(ROOT_UNROOTED, chain_from(u));
        }
        for (PyObject *o : alive) Py_DECREF(o);
        if (!ok) PyErr_Clear();
    }
    for (uint32_t t : touched_) parent_[t] = EMPTY;
    touched_.clear();
    for (PyObject *s : live_seeds) Py_DECREF(s);
    return true;
}

}  // namespace taskleak
