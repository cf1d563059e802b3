#include "heap/forward_search.hpp"
#include "heap/ptr_table.hpp"
#include <cstdint>

namespace taskleak {

namespace {

constexpr uint32_t NONE = UINT32_MAX;

struct Node {
    PyObject *obj;
    uint32_t parent;  // index into nodes, NONE for a root
    int32_t root;     // the caller's root index this node descends from
};

// Address -> node index, open addressing; grows by rehashing (no Python).
class NodeMap {
public:
    NodeMap() { reset(1 << 14); }
    uint32_t find(PyObject *p) const {
        for (size_t i = slot(p);; i = (i + 1) & mask_) {
            if (keys_[i] == p) return vals_[i];
            if (keys_[i] == nullptr) return NONE;
        }
    }
    // False if present already.
    bool insert(PyObject *p, uint32_t v) {
        if (2 * (size_ + 1) > keys_.size()) grow();
        size_t i = slot(p);
        for (; keys_[i] != nullptr; i = (i + 1) & mask_)
            if (keys_[i] == p) return false;
        keys_[i] = p;
        vals_[i] = v;
        ++size_;
        return true;
    }

private:
    size_t slot(const void *p) const {
        uint64_t x = (uint64_t)(uintptr_t)p >> 4;
        x *= 0x9E3779B97F4A7C15ull;
        return (size_t)(x >> 20) & mask_;
    }
    void reset(size_t cap) {
        keys_.assign(cap, nullptr);
        vals_.assign(cap, NONE);
        mask_ = cap - 1;
        size_ = 0;
    }
    void grow() {
        std::vector<PyObject *> k;
        std::vector<uint32_t> v;
        k.swap(keys_);
        v.swap(vals_);
        reset(k.size() * 2);
        for (size_t i = 0; i < k.size(); ++i)
            if (k[i] != nullptr) insert(k[i], v[i]);
    }
    std::vector<PyObject *> keys_;
    std::vector<uint32_t> vals_;
    size_t mask_ = 0;
    size_t size_ = 0;
};

// Containers with more eligible children than this are expanded after the
// rest of their level (see forward_search): a list of 300,000 records next
// to a dict holding the object asked about should not cost 300,000 visits.
constexpr size_t BIG = 256;

struct Search {
    NodeMap targets;  // target -> its position in the caller's list
    const PtrTable *stop_set;
    const PtrTable *stop_types;
    std::vector<Node> nodes;
    NodeMap seen;
    std::vector<std::vector<uint32_t>> holders;  // per target: nodes that refer to it
    size_t unhit = 0;                            // targets no node refers to yet
    std::vector<PyObject *> kids;                // eligible children of the node being traversed
    uint32_t current = NONE;                     // node being traversed
    size_t kid_limit = SIZE_MAX;                 // past this many kids, only look for the target
    // CPython untracks containers that hold only untracked objects (a dict
    // of strings, a tuple of ints): they hold nothing tracked, so the walk
    // skips them - unless a target is itself untracked (a str asked about),
    // which such a container may be the only one to hold.
    bool enter_untracked = false;
};

int collect_child(PyObject *child, void *arg) {
    auto *s = (Search *)arg;
    uint32_t t = s->targets.find(child);
    if (t != NONE) {
        // A second reference from the same holder is the same finding.
        auto &h = s->holders[t];
        if (h.empty()) --s->unhit;
        if (h.empty() || h.back() != s->current) h.push_back(s->current);
        return 0;  // a target is never entered: what it holds is its own business
    }
    if (s->kids.size() > s->kid_limit) return 0;  // deferred anyway: no need to gather
    if (!PyObject_IS_GC(child) || (!s->enter_untracked && !PyObject_GC_IsTracked(child))) return 0;
    if (s->stop_set->find(child) != PtrTable::NOT_FOUND) return 0;
    if (s->stop_types->size() != 0 && s->stop_types->find(Py_TYPE(child)) != PtrTable::NOT_FOUND) return 0;
    if (s->seen.find(child) != NONE) return 0;
    s->kids.push_back(child);
    return 0;
}

// Traverses node u: records it as a holder if it refers to the target, and
// gathers its unseen children. Returns false if there were too many to add
// now (u is then deferred: its children join the end of the next level).
bool expand(Search &s, uint32_t u, std::vector<uint32_t> &next, bool allow_defer) {
    PyObject *o = s.nodes[u].obj;
    s.kids.clear();
    if (!PyObject_IS_GC(o)) return true;
    traverseproc tp = Py_TYPE(o)->tp_traverse;
    if (tp == nullptr) return true;
    s.current = u;
    s.kid_limit = allow_defer ? BIG : SIZE_MAX;
    tp(o, collect_child, &s);
    if (allow_defer && s.kids.size() > BIG) return false;
    for (PyObject *c : s.kids) {
        uint32_t idx = (uint32_t)s.nodes.size();
        if (!s.seen.insert(c, idx)) continue;  // listed twice by this holder
        s.nodes.push_back(Node{c, u, s.nodes[u].root});
        next.push_back(idx);
    }
    return true;
}

}  // namespace

std::vector<std::vector<HolderChain>> forward_search_many(const std::vector<PyObject *> &targets,
                                                          const std::vector<PyObject *> &roots,
                                                          const std::vector<PyObject *> &stops,
                                                          const std::vector<PyObject *> &stop_types, int max_depth,
                                                          int max_paths, ForwardSearchStats *stats) {
    std::vector<std::vector<HolderChain>> out(targets.size());
    if (max_paths <= 0 || targets.empty()) return out;
    PtrTable stop_set, type_set;
    stop_set.reset(stops.size());
    for (PyObject *p : stops) stop_set.insert(p);
    type_set.reset(stop_types.size());
    for (PyObject *p : stop_types) type_set.insert(p);

    Search s;
    s.stop_set = &stop_set;
    s.stop_types = &type_set;
    for (size_t t = 0; t < targets.size(); ++t) {
        s.targets.insert(targets[t], (uint32_t)t);  // a repeat keeps the first
        if (!PyObject_IS_GC(targets[t]) || !PyObject_GC_IsTracked(targets[t])) s.enter_untracked = true;
    }
    s.holders.resize(targets.size());
    s.unhit = targets.size();
    std::vector<uint32_t> frontier, next, deferred, next_deferred;
    for (size_t i = 0; i < roots.size(); ++i) {
        PyObject *r = roots[i];
        uint32_t t = s.targets.find(r);
        if (t != NONE) {
            // A root that is the object itself (a frame's local variable).
            if ((int)out[t].size() < max_paths) out[t].push_back(HolderChain{(int)i, {Py_NewRef(r)}});
            continue;
        }
        if (stop_set.find(r) != PtrTable::NOT_FOUND) continue;
        uint32_t idx = (uint32_t)s.nodes.size();
        if (!s.seen.insert(r, idx)) continue;  // the same object under two roots: the first wins
        s.nodes.push_back(Node{r, NONE, (int32_t)i});
        frontier.push_back(idx);
    }
    // Breadth-first by levels. Within a level, the nodes reached through
    // small containers are expanded first and the children of big ones
    // (deferred from the level before) last; the search ends with the first
    // level that reaches every target, as soon as that level's holders are
    // known, so a big container's members are visited only when a target
    // is not nearer through something else.
    // After the first level that reaches a target, up to EXTRA more levels
    // are searched for it while fewer than max_paths holders are known (a
    // class attribute three references away and an instance attribute four
    // away are both worth reporting), without opening big containers any
    // more once every target is reached.
    constexpr int EXTRA = 2;
    std::vector<int> hit_depth(targets.size(), -1);
    auto settled = [&](int depth) {
        for (size_t t = 0; t < targets.size(); ++t) {
            if (s.holders[t].empty()) return false;
            if (hit_depth[t] < 0) hit_depth[t] = depth;
            if ((int)s.holders[t].size() < max_paths && depth < hit_depth[t] + EXTRA) return false;
        }
        return true;
    };
    int depth = 0;
    for (; (!frontier.empty() || !deferred.empty()) && depth < max_depth; ++depth) {
        next.clear();
        next_deferred.clear();
        for (uint32_t u : frontier)
            if (!expand(s, u, next, true)) next_deferred.push_back(u);
        if (s.unhit > 0) {
            for (uint32_t big : deferred) {
                // Its children are this level's nodes: add and expand them.
                std::vector<uint32_t> members;
                expand(s, big, members, false);
                for (uint32_t m : members) {
                    if (!expand(s, m, next, true)) next_deferred.push_back(m);
                }
                if (s.unhit == 0) break;
            }
        }
        for (size_t t = 0; t < targets.size(); ++t)
            if (!s.holders[t].empty() && hit_depth[t] < 0) hit_depth[t] = depth;
        if (settled(depth)) {
            ++depth;
            break;
        }
        frontier.swap(next);
        if (s.unhit == 0) next_deferred.clear();
        deferred.swap(next_deferred);
    }
    if (stats) {
        stats->visited = s.nodes.size();
        stats->depth = depth;
        stats->exhausted = s.unhit > 0 && frontier.empty() && deferred.empty();
    }
    for (size_t t = 0; t < targets.size(); ++t) {
        for (uint32_t h : s.holders[t]) {
            if ((int)out[t].size() >= max_paths) break;
            std::vector<PyObject *> chain;
            for (uint32_t u = h; u != NONE; u = s.nodes[u].parent) chain.push_back(s.nodes[u].obj);
            std::vector<PyObject *> ordered(chain.rbegin(), chain.rend());
            ordered.push_back(targets[t]);
            for (PyObject *o : ordered) Py_INCREF(o);
            out[t].push_back(HolderChain{s.nodes[h].root, std::move(ordered)});
        }
    }
    return out;
}

std::vector<HolderChain> forward_search(PyObject *target, const std::vector<PyObject *> &roots,
                                        const std::vector<PyObject *> &stops, const std::vector<PyObject *> &stop_types,
                                        int max_depth, int max_paths, ForwardSearchStats *stats) {
    std::vector<std::vector<HolderChain>> all =
        forward_search_many({target}, roots, stops, stop_types, max_depth, max_paths, stats);
    return std::move(all[0]);
}

}  // namespace taskleak
