// The blocked-loop watchdog: a native thread that never takes the GIL.
//
// Each watched loop owns a Slot and publishes a heartbeat into it from its
// own thread: `state` says whether the loop is waiting for I/O (IDLE: inside
// the selector's select(), or parked between periodic beats), running
// callbacks (BUSY) or not running at all (STOPPED), and `stamp` says since
// when. A loop BUSY for longer than the threshold is blocked: the watchdog
// opens an episode and samples the loop thread's Python stack every tick
// (remote_frames.hpp) until the loop publishes again, which closes it.
//
// Everything here is plain C++; the Python-facing glue (rendering episodes,
// the select() wrapper) is in heartbeat.cpp and watchdog_bindings.cpp.
#pragma once
#include "cpython/remote_frames.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace taskleak::watchdog {

enum State : int { FREE = 0, STOPPED = 1, IDLE = 2, BUSY = 3 };

// How an episode ended.
enum End : int { RESUMED = 0, LOOP_STOPPED = 1, UNWATCHED = 2 };

constexpr int MAX_SLOTS = 1024;  // loops watched at once (a slot is freed when its loop dies)
constexpr int MAX_DEPTH = 64;
constexpr int MAX_DISTINCT_STACKS = 32;
constexpr size_t MAX_CLOSED = 1024;  // closed episodes waiting to be rendered
constexpr size_t MAX_CODES = 128;    // distinct code objects described per episode

struct SampledStack {
    std::vector<cpython::RemoteFrame> frames;  // innermost first
    uint32_t count = 0;
};

struct Episode {
    uint64_t seq = 0;
    uint64_t loop_token = 0;  // chosen by the Python side, identifies the loop
    uint64_t thread_ident = 0;
    int64_t start_ns = 0;  // last heartbeat before the block (+ the beat period)
    int64_t end_ns = 0;
    int64_t detected_ns = 0;  // when the watchdog noticed
    int64_t first_sample_ns = 0;
    int64_t first_sample_precise_ns = 0;  // CLOCK_MONOTONIC (time.monotonic_ns()), for benchmarks
    int64_t threshold_ns = 0;
    uint32_t samples = 0;        // all samples taken (grouped ones + overflow + empty)
    uint32_t other_samples = 0;  // samples beyond MAX_DISTINCT_STACKS distinct stacks
    int end = RESUMED;
    std::vector<SampledStack> stacks;
    // What each sampled code object is, copied while it was on the stack
    // (filename empty: it could not be read).
    std::vector<cpython::CodeInfo> codes;

    const cpython::CodeInfo *code_info(const cpython::RemoteFrame &f) const;
};

struct Slot {
    std::atomic<int> state{FREE};
    std::atomic<int64_t> stamp{0};  // monotonic ns of the last state change / beat
    std::atomic<uint32_t> gen{0};   // bumped on every acquire: stale handles are ignored
    std::atomic<bool> episode_open{false};
    std::atomic<uintptr_t> tstate{0};   // the loop thread's PyThreadState
    std::atomic<int64_t> period_ns{0};  // > 0: heartbeats are periodic beats (no select hook)
    std::atomic<uint64_t> thread_ident{0};
    uint64_t loop_token = 0;
    std::mutex mu;  // guards `open`, the names and the totals
    Episode open;
    std::string label;        // the loop's stable label (loop_label.py), for live answers
    std::string thread_name;  // the thread running it
    uint64_t blocks = 0;
    int64_t blocked_ns = 0;
};

// A copy of an episode still in progress, for answers given while the loop
// is stuck (src/core/live/): nothing in it points into the watchdog.
struct OpenEpisode {
    Episode episode;
    std::string label;
    std::string thread_name;
    int64_t now_ns = 0;  // when the copy was taken (the watchdog's clock)
};

// A watched loop's name and whether (and since when) it is blocked now.
struct LoopNow {
    std::string label;
    bool blocked = false;
    int64_t blocked_ns = 0;  // so far
};

struct Totals {
    uint64_t blocks;
    int64_t blocked_ns;
};

class Watchdog {
public:
    static Watchdog &get();

    // Thread control (with the GIL held by the caller, who serialises them).
    void start(int64_t threshold_ns, int64_t interval_ns);
    void stop();
    void after_fork_child();  // in a forked child, before anything else
    bool running() const { return running_.load(); }
    void set_threshold(int64_t ns) { threshold_ns_.store(ns); }
    int64_t threshold_ns() const { return threshold_ns_.load(); }
    int64_t interval_ns() const { return interval_ns_.load(); }

    // Slots (any thread; the loop thread for activate/beat/idle/busy).
    int acquire(uint64_t loop_token, uint32_t *gen);
    void release(int slot, uint32_t gen);
    void activate(int slot, uint32_t gen, uintptr_t tstate, uint64_t thread_ident, int64_t period_ns);
    void deactivate(int slot, uint32_t gen);  // loop stopped running
    // Heartbeats, from the loop thread. Cheap: two atomic stores and a load.
    void enter_idle(int slot, uint32_t gen);
    void leave_idle(int slot, uint32_t gen);
    void beat(int slot, uint32_t gen);

    // Closed episodes not yet handed to Python, oldest first.
    bool has_closed() const { return closed_count_.load(std::memory_order_relaxed) != 0; }
    std::vector<Episode> take_closed();
    Totals totals() const { return {total_blocks_.load(), total_ns_.load()}; }
    Totals slot_totals(int slot, uint32_t gen);
    // Names for live answers (any thread; the strings are copied).
    void set_names(int slot, uint32_t gen, const std::string &label, const std::string &thread_name);
    // Episodes in progress now, copied slot by slot under each slot's lock
    // (never the GIL): what a stuck loop is doing, while it is stuck.
    std::vector<OpenEpisode> open_episodes();
    // Every watched loop that has a label, blocked or not.
    std::vector<LoopNow> loops_now();
    uint64_t dropped() const { return dropped_.load(); }
    uint64_t samples_taken() const { return samples_.load(); }

private:
    Slot *slot_of(int slot, uint32_t gen);
    void run();
    void check_slot(Slot &s, int64_t now);
    void sample(Slot &s, int64_t now);                    // with s.mu held
    void close_locked(Slot &s, int64_t end_ns, int how);  // with s.mu held

    Slot slots_[MAX_SLOTS];
    std::atomic<int> high_{0};  // slots in use are below this
    std::atomic<bool> running_{false};
    std::atomic<bool> thread_live_{false};
    std::atomic<int64_t> threshold_ns_{100000000};
    std::atomic<int64_t> interval_ns_{10000000};
    std::thread thread_;
    std::mutex run_mu_;
    std::condition_variable run_cv_;
    // Held by the thread while it works (never while it waits): fork()
    // takes it first, so the thread is parked in a wait, holding no lock of
    // its own or of the allocator, when the child is made.
    std::mutex work_mu_;
    friend void fork_prepare();
    friend void fork_parent();
    friend void fork_child();
    bool stop_requested_ = false;

    std::mutex closed_mu_;
    std::deque<Episode> closed_;
    std::atomic<size_t> closed_count_{0};
    std::atomic<uint64_t> seq_{0};
    std::atomic<uint64_t> total_blocks_{0};
    std::atomic<int64_t> total_ns_{0};
    std::atomic<uint64_t> dropped_{0};
    std::atomic<uint64_t> samples_{0};
};

int64_t now_ns();          // the watchdog's clock (CLOCK_MONOTONIC_COARSE)
int64_t precise_now_ns();  // CLOCK_MONOTONIC

}  // namespace taskleak::watchdog
