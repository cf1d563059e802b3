// Await chains: from a task's coroutine down through cr_await / gi_yieldfrom /
// ag_await to the innermost suspended frame, as (code, offset) pairs. This is
// the "where is it suspended" answer that Task.get_stack() (one frame) lacks.
#pragma once
#include "cpython/frames.hpp"
#include <cstdint>
#include <vector>

namespace taskleak {

// Walks many chains. What a suspension point awaits is read off the frame's
// value stack, without a call or a reference count per link; whether a
// point awaits at all is asked of the interpreter (cr_await) the first time
// each (code, offset) is seen, and remembered for the walker's lifetime (it
// holds those code objects, so an address always names the same bytecode).
// A census keeps one walker for its pass. With the GIL held throughout.
class AwaitWalk {
public:
    AwaitWalk() = default;
    AwaitWalk(const AwaitWalk &) = delete;
    AwaitWalk &operator=(const AwaitWalk &) = delete;
    ~AwaitWalk();
    // Writes up to `max` frames, outermost first, and returns the count.
    // *leaf receives a new reference to what the innermost frame awaits (a
    // FutureIter, a foreign awaitable...) or nullptr. Runs no Python code
    // and never raises.
    int walk(PyObject *coro, cpython::CodeLoc *out, int max, PyObject **leaf);

private:
    enum : uint8_t { UNKNOWN = 0, AWAITS_TOP, AWAITS_NOTHING, ASK };
    uint8_t &verdict(const cpython::CodeLoc &loc);
    uint8_t &slot_for(PyCodeObject *code, int32_t offset, bool *added);
    struct Slot {
        PyCodeObject *code = nullptr;
        int32_t offset = 0;
        uint8_t verdict = UNKNOWN;
    };
    std::vector<Slot> slots_ = std::vector<Slot>(64);
    size_t used_ = 0;
    // The point last seen at each of the first links: consecutive chains are
    // usually the same, and a comparison is cheaper than a probe.
    static constexpr int MEMO = 8;
    Slot last_[MEMO];
};

// One chain, with a walker of its own.
int walk_await_chain(PyObject *coro, cpython::CodeLoc *out, int max, PyObject **leaf);

}  // namespace taskleak
