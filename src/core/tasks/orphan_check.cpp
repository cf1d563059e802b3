#include "tasks/orphan_check.hpp"

namespace taskleak {

void PtrMap::resize(size_t n) {
    std::vector<Slot> old;
    old.swap(slots_);
    uint32_t old_gen = gen_;
    slots_.assign(n, Slot{nullptr, 0, 0});
    mask_ = n - 1;
    gen_ = 1;
    count_ = 0;
    for (const Slot &s : old) {
        if (s.gen == old_gen) {
            bool ins;
            insert(s.key, s.value, &ins);
        }
    }
}

uint32_t *PtrMap::find(PyObject *key) {
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
        Slot &s = slots_[i];
        if (s.gen != gen_) return nullptr;
        if (s.key == key) return &s.value;
    }
}

uint32_t *PtrMap::insert(PyObject *key, uint32_t value, bool *inserted) {
    if ((count_ + 1) * 4 > slots_.size() * 3) resize(slots_.size() * 2);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
        Slot &s = slots_[i];
        if (s.gen != gen_) {
            s = Slot{key, gen_, value};
            ++count_;
            *inserted = true;
            return &s.value;
        }
        if (s.key == key) {
            *inserted = false;
            return &s.value;
        }
    }
}

void OrphanAnalysis::add_hub(PyObject *o) {
    bool ins;
    hubs_.insert(o, 1, &ins);
}

void OrphanAnalysis::add_held(PyObject *o, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) held_.push_back(o);
}

void OrphanAnalysis::add_task_type(PyTypeObject *type) {
    for (PyTypeObject *t : task_types_)
        if (t == type) return;
    task_types_.push_back(type);
}

// Long-lived by nature: what they reference is alive anyway, and expanding
// them would pull in the whole program.
OrphanAnalysis::Kind OrphanAnalysis::kind_of(PyTypeObject *t) {
    TypeSlot &slot = type_cache_[((uintptr_t)t >> 4) & 255];
    if (slot.type == t) return slot.kind;
    Kind k = Kind::Member;
    if (!(t->tp_flags & Py_TPFLAGS_HAVE_GC)) k = Kind::Skip;  // cannot hold anything we could follow
    else if (PyType_FastSubclass(t, Py_TPFLAGS_TYPE_SUBCLASS) || t == &PyModule_Type || t == &PyCode_Type ||
             t == &PyFunction_Type || t == &PyContext_Type || (loop_base_ && PyType_IsSubtype(t, loop_base_)))
        k = Kind::Hub;
    else if (PyType_IsSubtype(t, &PyModule_Type)) k = Kind::Hub;
    else if (t == &PyDict_Type) k = Kind::MaybeHub;  // module namespaces are registered hubs
    slot = TypeSlot{t, k};
    return k;
}

bool OrphanAnalysis::is_hub(PyObject *o) {
    switch (kind_of(Py_TYPE(o))) {
        case Kind::Member:
            return false;
        case Kind::MaybeHub:
            return hubs_.find(o) != nullptr;
        default:
            return true;
    }
}

int orphan_visit(PyObject *o, void *arg) { return o == nullptr ? 0 : static_cast<OrphanAnalysis *>(arg)->on_edge(o); }

bool OrphanAnalysis::add_member(PyObject *o, uint32_t *idx) {
    bool inserted;
    *idx = *members_.insert(o, (uint32_t)objs_.size(), &inserted);
    if (inserted) {
        if (objs_.size() >= cap_) {
            overflow_ = true;
            return false;
        }
        objs_.push_back(o);
        indeg_.push_back(0);
        refcnt_.push_back(Py_REFCNT(o));  // read now, while the header is in cache
    }
    return true;
}

int OrphanAnalysis::on_edge(PyObject *o) {
    // Objects without tp_traverse cannot hold anything we could follow.
    if (is_hub(o)) return 0;
    uint32_t idx;
    if (!add_member(o, &idx)) return 1;  // over the cap: stops the traversal
    ++indeg_[idx];
    edges_.push_back(idx);
    return 0;
}

void OrphanAnalysis::mark_from(uint32_t root, bool task_root) {
    queue_.clear();
    queue_.push_back(root);
    if (task_root) task_label_[root] = task_label_[root] == NONE ? root : MANY;
    else origin_[root] = root;
    for (size_t q = 0; q < queue_.size(); ++q) {
        uint32_t i = queue_[q];
        uint32_t label = task_root ? task_label_[i] : origin_[i];
        for (uint32_t e = edge_start_[i]; e < edge_start_[i + 1]; ++e) {
            uint32_t j = edges_[e];
            if (origin_[j] != NONE) continue;  // reached by a non-task root already
            if (!task_root) {
                origin_[j] = label;
                queue_.push_back(j);
                continue;
            }
            // Task roots: an object is re-queued at most twice (NONE -> one -> MANY).
            uint32_t &l = task_label_[j];
            if (l == NONE) {
                l = label;
                queue_.push_back(j);
            } else if (l != MANY && l != label) {
                l = MANY;
                queue_.push_back(j);
            }
        }
    }
}

void OrphanAnalysis::run(const std::vector<std::pair<PyObject *, PyObject *>> &checks) {
    results_.assign(checks.size(), OrphanResult{});
    members_.clear();
    objs_.clear();
    indeg_.clear();
    refcnt_.clear();
    edge_start_.clear();
    edges_.clear();
    overflow_ = false;
    objs_.reserve(checks.size() * 8);
    indeg_.reserve(checks.size() * 8);
    refcnt_.reserve(checks.size() * 8);
    edge_start_.reserve(checks.size() * 8);
    edges_.reserve(checks.size() * 12);
    uint32_t idx;
    for (const auto &c : checks)
        if (c.second != nullptr && c.second != Py_None) add_member(c.first, &idx);
    for (size_t i = 0; i < objs_.size() && !overflow_; ++i) {
        edge_start_.push_back((uint32_t)edges_.size());
        PyObject *o = objs_[i];
        traverseproc tp = Py_TYPE(o)->tp_traverse;
        if (tp != nullptr) tp(o, orphan_visit, this);
    }
    size_t n = objs_.size();
    if (overflow_) {
        for (size_t k = 0; k < checks.size(); ++k) {
            if (checks[k].second == nullptr || checks[k].second == Py_None) continue;
            results_[k].verdict = Orphan::Unknown;
            results_[k].examined = n;
        }
        return;
    }
    edge_start_.push_back((uint32_t)edges_.size());
    // taskleak's own references are not external: discount them (looked up
    // in the members table, in census order, which is close to memory order).
    for (PyObject *o : held_)
        if (uint32_t *i = members_.find(o)) --refcnt_[*i];
    // Roots: members referenced from outside G.
    std::vector<uint32_t> task_roots;
    origin_.assign(n, NONE);
    task_label_.assign(n, NONE);
    for (uint32_t r = 0; r < n; ++r) {
        Py_ssize_t refs = refcnt_[r];
        if (refs <= (Py_ssize_t)indeg_[r]) continue;  // every reference comes from inside G
        PyObject *o = objs_[r];
        bool is_task = false;
        for (PyTypeObject *t : task_types_) is_task |= Py_TYPE(o) == t;
        if (is_task) task_roots.push_back(r);
        else if (origin_[r] == NONE) mark_from(r, false);
    }
    for (uint32_t r : task_roots)
        if (origin_[r] == NONE) mark_from(r, true);
    for (size_t k = 0; k < checks.size(); ++k) {
        OrphanResult &out = results_[k];
        PyObject *task = checks[k].first, *waiter = checks[k].second;
        if (waiter == nullptr || waiter == Py_None) continue;
        out.examined = n;
        uint32_t *wi = members_.find(waiter);
        uint32_t *ti = members_.find(task);
        if (wi == nullptr || ti == nullptr) {
            out.verdict = Orphan::Unknown;
            continue;
        }
        uint32_t w = *wi, t = *ti;
        if (origin_[w] != NONE) {
            out.verdict = Orphan::Reachable;
            out.root = objs_[origin_[w]];
        } else if (task_label_[w] == MANY || (task_label_[w] != NONE && task_label_[w] != t)) {
            out.verdict = Orphan::Reachable;
            out.root = task_label_[w] == MANY ? nullptr : objs_[task_label_[w]];
        } else {
            out.verdict = Orphan::Orphaned;
        }
    }
}

}  // namespace taskleak
