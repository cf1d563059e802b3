#include "monitor/sampler.hpp"
#include "monitor/open_fds.hpp"
#include "monitor/rss.hpp"
#include "monitor/task_tally.hpp"
#include <chrono>
#include <cmath>
#include <cstdio>
#include <new>
#include <stdexcept>

namespace taskleak {

// Once the interpreter is finalizing, a foreign thread must not take the
// GIL (3.10-3.13 end such a thread from inside PyGILState_Ensure). The
// Python side stops every monitor at exit before that; this is the net.
static bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing() != 0;
#else
    return _Py_IsFinalizing() != 0;
#endif
}

// The period as the clock's own integer ticks, or an exception. Converting a
// double the tick type cannot hold is undefined behaviour: for inf it came
// out as INT64_MIN on x86-64, `next` fell behind `now` on every turn, and the
// thread sampled back to back holding the GIL (720 samples in 0.5 s). A
// period under one tick truncates to zero: the same busy loop.
std::chrono::steady_clock::duration Sampler::period_of(double interval_s) {
    using tick = std::chrono::steady_clock::duration;
    // Half the tick range: `next` is the clock's reading plus the period, and
    // the reading (time since boot on Linux) takes the other half. With
    // nanosecond ticks that is about 146 years.
    const double max_s = std::chrono::duration<double>(tick::max()).count() / 2;
    const double min_s = std::chrono::duration<double>(tick(1)).count();
    if (!(std::isfinite(interval_s) && interval_s >= min_s && interval_s <= max_s)) {
        char msg[200];
        std::snprintf(msg, sizeof msg,
                      "Sampler: interval must be a finite number of seconds from %g to %g "
                      "(what the steady clock can count), got %g",
                      min_s, max_s, interval_s);
        throw std::invalid_argument(msg);
    }
    return std::chrono::duration_cast<tick>(std::chrono::duration<double>(interval_s));
}

// period_ is declared before callback_: a refused period throws before the
// callback's reference is taken, so nothing leaks.
Sampler::Sampler(double interval_s, PyObject *callback)
    : period_(period_of(interval_s)), callback_(Py_NewRef(callback)) {}

Sampler::~Sampler() {
    if (thread_.joinable()) {
        {
            std::lock_guard<std::mutex> g(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        if (thread_.get_id() == std::this_thread::get_id()) thread_.detach();
        else {
            Py_BEGIN_ALLOW_THREADS
            thread_.join();
            Py_END_ALLOW_THREADS
        }
    }
    Py_CLEAR(callback_);
}

void Sampler::start() {
    if (running_) return;
    stop_ = false;
    running_ = true;
    thread_ = std::thread([this] { run(); });
}

void Sampler::stop() {
    {
        std::lock_guard<std::mutex> g(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
        if (thread_.get_id() == std::this_thread::get_id()) thread_.detach();
        else thread_.join();
    }
    running_ = false;
}

void Sampler::forget_after_fork() {
    // The std::thread names a thread of the parent: destroying or joining it
    // here is undefined. Overwrite the handle without running its destructor.
    new (&thread_) std::thread();
    // The mutex and condition variable are copies of the parent's, taken
    // while its sampler thread was waiting on them (or holding the mutex):
    // glibc's pthread_cond_destroy then waits forever for a waiter that does
    // not exist in this process, and the mutex may look locked. Start both
    // afresh, again without running the destructors (they own no memory).
    new (&mu_) std::mutex();
    new (&cv_) std::condition_variable();
    tally_after_fork();
    running_ = false;
    stop_ = false;
}

void Sampler::run() {
    auto next = std::chrono::steady_clock::now();
    for (;;) {
        {
            std::unique_lock<std::mutex> lk(mu_);
            if (cv_.wait_until(lk, next, [this] { return stop_; })) return;
        }
        next += period_;
        auto now = std::chrono::steady_clock::now();
        if (next < now) next = now;  // a late sample does not cause a burst of them
        int64_t rss = current_rss_bytes();
        const OpenFds fds = current_open_fds();
        if (finalizing()) return;
        PyGILState_STATE gs = PyGILState_Ensure();
        {
            bool stopped;
            {
                std::lock_guard<std::mutex> g(mu_);
                stopped = stop_;
            }
            if (!stopped) {
                PyObject *r = PyObject_CallFunction(callback_, "LLL", (long long)rss, (long long)fds.open,
                                                    (long long)fds.peer_closed);
                if (r == nullptr) PyErr_WriteUnraisable(callback_);
                Py_XDECREF(r);
                ++ticks_;
            }
        }
        PyGILState_Release(gs);
    }
}

}  // namespace taskleak
