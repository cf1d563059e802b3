#include "tasks/await_chain.hpp"
#include "cpython/attr_reader.hpp"
#include <cstring>

namespace taskleak {

static bool is_generator_like(PyObject *o) {
    // Exact checks: the three types cannot be subclassed (no
    // Py_TPFLAGS_BASETYPE), and PyGen_Check walks the MRO of everything else.
    return PyCoro_CheckExact(o) || PyGen_CheckExact(o) || PyAsyncGen_CheckExact(o);
}

// Wrapper objects with no public link to the generator they drive:
// `coro.__await__()` and `agen.__anext__()`/`athrow()` results. Their
// tp_traverse does visit that generator, which is how we find it.
static bool is_wrapper(PyObject *o) {
    const char *n = Py_TYPE(o)->tp_name;
    if (n[0] != 'c' && n[0] != 'a') return false;  // most leaves: "_asyncio.FutureIter", ...
    return std::strcmp(n, "coroutine_wrapper") == 0 || std::strcmp(n, "async_generator_asend") == 0 ||
           std::strcmp(n, "async_generator_athrow") == 0;
}

static int visit_find_gen(PyObject *o, void *arg) {
    auto **found = (PyObject **)arg;
    if (*found == nullptr && o != nullptr && is_generator_like(o)) *found = o;
    return 0;
}

// Borrowed: the wrapper holds it.
static PyObject *unwrap(PyObject *o) {
    traverseproc tp = Py_TYPE(o)->tp_traverse;
    if (tp == nullptr) return nullptr;
    PyObject *found = nullptr;
    tp(o, visit_find_gen, &found);
    return found;
}

// The interpreter's answer, through getters that only read the frame:
// borrowed (the frame's stack holds it), or nullptr.
static PyObject *awaited_by(PyObject *gen) {
    static cpython::AttrReader cr_await("cr_await"), gi_yieldfrom("gi_yieldfrom"), ag_await("ag_await");
    PyObject *v = PyCoro_CheckExact(gen)       ? cr_await.get(gen)
                  : PyAsyncGen_CheckExact(gen) ? ag_await.get(gen)
                                               : gi_yieldfrom.get(gen);
    Py_XDECREF(v);
    return v == Py_None ? nullptr : v;
}

AwaitWalk::~AwaitWalk() {
    for (const Slot &s : slots_) Py_XDECREF((PyObject *)s.code);
}

uint8_t &AwaitWalk::slot_for(PyCodeObject *code, int32_t offset, bool *added) {
    size_t mask = slots_.size() - 1;
    uint64_t h = ((uint64_t)(uintptr_t)code >> 4) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)offset;
    for (size_t i = (size_t)(h * 0xFF51AFD7ED558CCDull >> 40) & mask;; i = (i + 1) & mask) {
        Slot &s = slots_[i];
        *added = s.code == nullptr;
        if (*added) {
            s.code = code;
            s.offset = offset;
            ++used_;
        }
        if (s.code == code && s.offset == offset) return s.verdict;
    }
}

uint8_t &AwaitWalk::verdict(const cpython::CodeLoc &loc) {
    bool added = false;
    if (2 * (used_ + 1) > slots_.size()) {
        // The references move with their slots.
        std::vector<Slot> old(slots_.size() * 2);
        old.swap(slots_);
        used_ = 0;
        for (const Slot &s : old)
            if (s.code != nullptr) slot_for(s.code, s.offset, &added) = s.verdict;
    }
    uint8_t &v = slot_for(loc.code, loc.offset, &added);
    if (added) Py_INCREF((PyObject *)loc.code);
    return v;
}

int AwaitWalk::walk(PyObject *coro, cpython::CodeLoc *out, int max, PyObject **leaf) {
    *leaf = nullptr;
    int n = 0;
    // Borrowed all the way: nothing below runs Python code, so every object
    // reached stays held by the one before it.
    PyObject *obj = coro;
    while (obj != nullptr && obj != Py_None && n < max) {
        if (!is_generator_like(obj)) {
            PyObject *inner = is_wrapper(obj) ? unwrap(obj) : nullptr;
            if (inner == nullptr) break;
            obj = inner;
            continue;
        }
        PyObject *top = nullptr, *next = nullptr;
        if (cpython::generator_suspension(obj, &out[n], &top)) {
            Slot *memo = n < MEMO ? &last_[n] : nullptr;
            uint8_t &v = memo != nullptr && memo->code == out[n].code && memo->offset == out[n].offset &&
                                 memo->verdict != UNKNOWN
                             ? memo->verdict
                             : verdict(out[n]);
            if (v == UNKNOWN) {
                // A point awaits its stack top (every generator suspended
                // there does), awaits nothing, or - if the interpreter says
                // otherwise - is asked every time.
                PyObject *asked = awaited_by(obj);
                v = asked == nullptr ? AWAITS_NOTHING : asked == top ? AWAITS_TOP : ASK;
            }
            if (memo != nullptr) *memo = Slot{out[n].code, out[n].offset, v};
            if (v == AWAITS_TOP) next = top;
            else if (v == ASK) next = awaited_by(obj);
            ++n;
        } else {
            // Not started, running, or a build without direct frames.
            if (!cpython::generator_location(obj, &out[n])) break;
            ++n;
            next = awaited_by(obj);
        }
        obj = next;
    }
    if (obj != nullptr && obj != Py_None && n < max && !is_generator_like(obj)) *leaf = Py_NewRef(obj);
    return n;
}

int walk_await_chain(PyObject *coro, cpython::CodeLoc *out, int max, PyObject **leaf) {
    AwaitWalk w;
    return w.walk(coro, out, max, leaf);
}

}  // namespace taskleak
