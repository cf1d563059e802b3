// The watchdog thread and the heartbeat slots (see watchdog.hpp). No Python
// API is called here: the thread may run while another thread holds the GIL
// for seconds, which is exactly when it is needed.
#include "watchdog/watchdog.hpp"

#include <chrono>
#include <ctime>
#include <new>
#include <pthread.h>

namespace taskleak::watchdog {

// Heartbeats are stamped once per loop iteration, so with the coarse clock
// (~5 ns a read instead of ~23, resolution one kernel tick: 1-4 ms): episode
// durations are exact to a tick, which a 100 ms threshold does not notice.
int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t precise_now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  // the clock of time.monotonic_ns()
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void fork_prepare() { Watchdog::get().work_mu_.lock(); }
void fork_parent() { Watchdog::get().work_mu_.unlock(); }
void fork_child() {
    Watchdog &w = Watchdog::get();
    new (&w.work_mu_) std::mutex();
    w.after_fork_child();
}

Watchdog &Watchdog::get() {
    // Never destroyed: the thread is stopped explicitly (atexit on the Python
    // side), and static destruction order at exit must not join anything.
    static Watchdog *w = [] {
        auto *p = new Watchdog();
        pthread_atfork(fork_prepare, fork_parent, fork_child);
        return p;
    }();
    return *w;
}

namespace {
std::mutex g_acquire_mu;  // serialises slot acquisition
}

Slot *Watchdog::slot_of(int slot, uint32_t gen) {
    if (slot < 0 || slot >= MAX_SLOTS) return nullptr;
    Slot &s = slots_[slot];
    if (s.gen.load(std::memory_order_relaxed) != gen || s.state.load(std::memory_order_relaxed) == FREE) return nullptr;
    return &s;
}

int Watchdog::acquire(uint64_t loop_token, uint32_t *gen) {
    std::lock_guard<std::mutex> g(g_acquire_mu);
    for (int i = 0; i < MAX_SLOTS; ++i) {
        Slot &s = slots_[i];
        if (s.state.load() != FREE) continue;
        std::lock_guard<std::mutex> lk(s.mu);
        s.loop_token = loop_token;
        s.label.clear();
        s.thread_name.clear();
        s.blocks = 0;
        s.blocked_ns = 0;
        s.tstate.store(0);
        s.period_ns.store(0);
        s.episode_open.store(false);
        s.state.store(STOPPED);
        *gen = s.gen.load();
        if (i + 1 > high_.load()) high_.store(i + 1);
        return i;
    }
    return -1;
}

void Watchdog::release(int slot, uint32_t gen) {
    Slot *s = slot_of(slot, gen);
    if (s == nullptr) return;
    std::lock_guard<std::mutex> lk(s->mu);
    if (s->episode_open.load()) close_locked(*s, now_ns(), UNWATCHED);
    s->tstate.store(0);
    s->gen.fetch_add(1);
    s->state.store(FREE);
}

void Watchdog::activate(int slot, uint32_t gen, uintptr_t tstate, uint64_t thread_ident, int64_t period_ns) {
    Slot *s = slot_of(slot, gen);
    if (s == nullptr) return;
    std::lock_guard<std::mutex> lk(s->mu);
    int64_t now = now_ns();
    if (s->episode_open.load()) close_locked(*s, now, LOOP_STOPPED);
    s->tstate.store(tstate);
    s->thread_ident.store(thread_ident);
    s->period_ns.store(period_ns);
    s->stamp.store(now, std::memory_order_release);
    s->state.store(BUSY, std::memory_order_release);
}

void Watchdog::deactivate(int slot, uint32_t gen) {
    Slot *s = slot_of(slot, gen);
    if (s == nullptr) return;
    std::lock_guard<std::mutex> lk(s->mu);
    int64_t now = now_ns();
    if (s->episode_open.load()) close_locked(*s, now, LOOP_STOPPED);
    s->stamp.store(now, std::memory_order_release);
    s->state.store(STOPPED, std::memory_order_release);
}

void Watchdog::enter_idle(int slot, uint32_t gen) {
    // No stamp: an idle loop is never stale, and the end of an episode is
    // taken here (the common case) or by the watchdog when it sees IDLE.
    Slot *s = slot_of(slot, gen);
    if (s == nullptr) return;
    s->state.store(IDLE, std::memory_order_release);
    if (s->episode_open.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> lk(s->mu);
        if (s->episode_open.load()) close_locked(*s, now_ns(), RESUMED);
    }
}

void Watchdog::leave_idle(int slot, uint32_t gen) {
    Slot *s = slot_of(slot, gen);
    if (s == nullptr) return;
    s->stamp.store(now_ns(), std::memory_order_release);
    s->state.store(BUSY, std::memory_order_release);
}

void Watchdog::beat(int slot, uint32_t gen) {
    Slot *s = slot_of(slot, gen);
    if (s == nullptr) return;
    int64_t now = now_ns();
    s->stamp.store(now, std::memory_order_release);
    s->state.store(BUSY, std::memory_order_release);
    if (s->episode_open.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> lk(s->mu);
        if (s->episode_open.load()) close_locked(*s, now, RESUMED);
    }
}

void Watchdog::close_locked(Slot &s, int64_t end_ns, int how) {
    Episode e = std::move(s.open);
    s.open = Episode();
    s.episode_open.store(false, std::memory_order_release);
    e.end_ns = end_ns < e.start_ns ? e.start_ns : end_ns;
    e.end = how;
    int64_t dur = e.end_ns - e.start_ns;
    s.blocks += 1;
    s.blocked_ns += dur;
    total_blocks_.fetch_add(1);
    total_ns_.fetch_add(dur);
    std::lock_guard<std::mutex> g(closed_mu_);
    if (closed_.size() >= MAX_CLOSED) {
        closed_.pop_front();
        dropped_.fetch_add(1);
    }
    closed_.push_back(std::move(e));
    closed_count_.store(closed_.size(), std::memory_order_relaxed);
}

std::vector<Episode> Watchdog::take_closed() {
    std::lock_guard<std::mutex> g(closed_mu_);
    std::vector<Episode> out(std::make_move_iterator(closed_.begin()), std::make_move_iterator(closed_.end()));
    closed_.clear();
    closed_count_.store(0, std::memory_order_relaxed);
    return out;
}

Totals Watchdog::slot_totals(int slot, uint32_t gen) {
    Slot *s = slot_of(slot, gen);
    if (s == nullptr) return {0, 0};
    std::lock_guard<std::mutex> lk(s->mu);
    return {s->blocks, s->blocked_ns};
}

void Watchdog::set_names(int slot, uint32_t gen, const std::string &label, const std::string &thread_name) {
    Slot *s = slot_of(slot, gen);
    if (s == nullptr) return;
    std::lock_guard<std::mutex> lk(s->mu);
    s->label = label;
    s->thread_name = thread_name;
}

std::vector<OpenEpisode> Watchdog::open_episodes() {
    std::vector<OpenEpisode> out;
    int high = high_.load();
    for (int i = 0; i < high; ++i) {
        Slot &s = slots_[i];
        if (!s.episode_open.load(std::memory_order_acquire)) continue;
        std::lock_guard<std::mutex> lk(s.mu);
        if (!s.episode_open.load()) continue;
        OpenEpisode o;
        o.episode = s.open;
        o.label = s.label;
        o.thread_name = s.thread_name;
        o.now_ns = now_ns();
        out.push_back(std::move(o));
    }
    return out;
}

std::vector<LoopNow> Watchdog::loops_now() {
    std::vector<LoopNow> out;
    int high = high_.load();
    int64_t now = now_ns();
    for (int i = 0; i < high; ++i) {
        Slot &s = slots_[i];
        if (s.state.load(std::memory_order_acquire) == FREE) continue;
        std::lock_guard<std::mutex> lk(s.mu);
        if (s.state.load() == FREE || s.label.empty()) continue;
        LoopNow l;
        l.label = s.label;
        l.blocked = s.episode_open.load();
        if (l.blocked) l.blocked_ns = now > s.open.start_ns ? now - s.open.start_ns : 0;
        out.push_back(std::move(l));
    }
    return out;
}

const cpython::CodeInfo *Episode::code_info(const cpython::RemoteFrame &f) const {
    for (const cpython::CodeInfo &c : codes)
        if (c.code == f.code && c.filename_ptr == f.filename && c.firstlineno == f.firstlineno) return &c;
    return nullptr;
}

void Watchdog::sample(Slot &s, int64_t now) {
    cpython::RemoteFrame buf[MAX_DEPTH];
    int n = cpython::read_remote_stack(s.tstate.load(), buf, MAX_DEPTH);
    Episode &e = s.open;
    e.samples += 1;
    samples_.fetch_add(1, std::memory_order_relaxed);
    if (n <= 0) return;
    if (e.first_sample_ns == 0) {
        e.first_sample_ns = now;
        e.first_sample_precise_ns = precise_now_ns();
    }
    // Describe new code objects now: they are alive while on this stack,
    // and may not be once the loop resumes.
    for (int i = 0; i < n && e.codes.size() < MAX_CODES; ++i) {
        if (e.code_info(buf[i]) != nullptr) continue;
        cpython::CodeInfo info;
        if (!cpython::read_code_info(buf[i], &info)) {
            info = cpython::CodeInfo();
            info.code = buf[i].code;
            info.filename_ptr = buf[i].filename;
            info.firstlineno = buf[i].firstlineno;
        }
        e.codes.push_back(std::move(info));
    }
    for (SampledStack &st : e.stacks) {
        if ((int)st.frames.size() != n) continue;
        bool same = true;
        for (int i = 0; i < n && same; ++i)
            same = st.frames[i].code == buf[i].code && st.frames[i].offset == buf[i].offset;
        if (same) {
            st.count += 1;
            return;
        }
    }
    if ((int)e.stacks.size() >= MAX_DISTINCT_STACKS) {
        e.other_samples += 1;
        return;
    }
    SampledStack st;
    st.frames.assign(buf, buf + n);
    st.count = 1;
    e.stacks.push_back(std::move(st));
}

void Watchdog::check_slot(Slot &s, int64_t now) {
    int st = s.state.load(std::memory_order_acquire);
    if (st == FREE) return;
    if (st == BUSY) {
        int64_t stamp = s.stamp.load(std::memory_order_acquire);
        int64_t period = s.period_ns.load(std::memory_order_relaxed);
        int64_t thr = threshold_ns_.load(std::memory_order_relaxed);
        if (now - stamp > thr + period) {
            std::lock_guard<std::mutex> lk(s.mu);
            // The loop may have moved on while we took the lock.
            if (s.state.load() == BUSY && s.stamp.load() == stamp) {
                if (!s.episode_open.load()) {
                    Episode &e = s.open;
                    e = Episode();
                    e.seq = seq_.fetch_add(1) + 1;
                    e.loop_token = s.loop_token;
                    e.thread_ident = s.thread_ident.load();
                    e.start_ns = stamp + period;
                    e.detected_ns = now;
                    e.threshold_ns = thr;
                    s.episode_open.store(true, std::memory_order_release);
                }
                sample(s, now);
                return;
            }
        }
    }
    if (s.episode_open.load(std::memory_order_acquire)) {
        // The loop published again (or stopped) without closing the episode
        // itself (it raced with the opening): it ended at the latest now.
        std::lock_guard<std::mutex> lk(s.mu);
        if (s.episode_open.load()) {
            int now_state = s.state.load();
            int64_t stamp = s.stamp.load();
            int64_t end = now_state == BUSY && stamp > s.open.start_ns ? stamp : now;
            close_locked(s, end, now_state == STOPPED ? LOOP_STOPPED : RESUMED);
        }
    }
}

void Watchdog::run() {
    thread_live_.store(true, std::memory_order_release);
    std::unique_lock<std::mutex> lk(run_mu_);
    while (!stop_requested_) {
        lk.unlock();
        {
            std::lock_guard<std::mutex> work(work_mu_);
            int64_t now = now_ns();
            int high = high_.load();
            for (int i = 0; i < high; ++i) check_slot(slots_[i], now);
        }
        lk.lock();
        if (stop_requested_) break;
        run_cv_.wait_for(lk, std::chrono::nanoseconds(interval_ns_.load()));
    }
}

void Watchdog::start(int64_t threshold_ns, int64_t interval_ns) {
    threshold_ns_.store(threshold_ns);
    interval_ns_.store(interval_ns);
    if (running_.load()) return;
    {
        std::lock_guard<std::mutex> lk(run_mu_);
        stop_requested_ = false;
    }
    thread_live_.store(false);
    thread_ = std::thread([this] { run(); });
    // Return once the thread runs our code: its start-up (which allocates)
    // is over, so a fork() right after start() cannot catch it halfway.
    while (!thread_live_.load(std::memory_order_acquire)) std::this_thread::yield();
    running_.store(true);
}

void Watchdog::stop() {
    if (!running_.load()) return;
    {
        std::lock_guard<std::mutex> lk(run_mu_);
        stop_requested_ = true;
    }
    run_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    running_.store(false);
    int64_t now = now_ns();
    for (int i = 0; i < high_.load(); ++i) {
        Slot &s = slots_[i];
        std::lock_guard<std::mutex> g(s.mu);
        if (s.episode_open.load()) close_locked(s, now, UNWATCHED);
    }
}

void Watchdog::after_fork_child() {
    // The thread did not survive the fork, and a lock it held may look held
    // forever: forget the thread (without joining it) and renew the locks.
    new (&thread_) std::thread();
    running_.store(false);
    new (&run_mu_) std::mutex();
    new (&run_cv_) std::condition_variable();
    new (&closed_mu_) std::mutex();
    // The child watches nothing: every slot is freed (and its generation
    // bumped, so heartbeat objects inherited on loops' selectors go inert).
    for (Slot &s : slots_) {
        new (&s.mu) std::mutex();
        new (&s.label) std::string();  // (its old buffer is leaked: the parent may have been writing it)
        new (&s.thread_name) std::string();
        s.episode_open.store(false);
        s.open = Episode();
        s.tstate.store(0);
        if (s.state.load() != FREE) s.gen.fetch_add(1);
        s.state.store(FREE);
    }
    closed_.clear();
    closed_count_.store(0);
}

}  // namespace taskleak::watchdog
