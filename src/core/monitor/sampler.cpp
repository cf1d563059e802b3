#include "monitor/sampler.hpp"
#include "monitor/rss.hpp"
#include "monitor/task_tally.hpp"
#include <chrono>
#include <new>

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

Sampler::Sampler(double interval_s, PyObject *callback) : interval_s_(interval_s), callback_(Py_NewRef(callback)) {}

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
    tally_after_fork();
    running_ = false;
    stop_ = false;
}

void Sampler::run() {
    auto period = std::chrono::duration<double>(interval_s_);
    auto next = std::chrono::steady_clock::now();
    for (;;) {
        {
            std::unique_lock<std::mutex> lk(mu_);
            if (cv_.wait_until(lk, next, [this] { return stop_; })) return;
        }
        next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
        auto now = std::chrono::steady_clock::now();
        if (next < now) next = now;  // a late sample does not cause a burst of them
        int64_t rss = current_rss_bytes();
        if (finalizing()) return;
        PyGILState_STATE gs = PyGILState_Ensure();
        {
            bool stopped;
            {
                std::lock_guard<std::mutex> g(mu_);
                stopped = stop_;
            }
            if (!stopped) {
                PyObject *arg = PyLong_FromLongLong(rss);
                PyObject *r = arg ? PyObject_CallOneArg(callback_, arg) : nullptr;
                Py_XDECREF(arg);
                if (r == nullptr) PyErr_WriteUnraisable(callback_);
                Py_XDECREF(r);
                ++ticks_;
            }
        }
        PyGILState_Release(gs);
    }
}

}  // namespace taskleak
