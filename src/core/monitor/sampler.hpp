// The monitor's clock: a native thread (not a Python thread: it is not in
// threading.enumerate() and never runs on an event loop's thread) that wakes
// every `interval` seconds, reads the RSS and the count of open descriptors
// without the GIL, then takes the GIL and hands the readings to a Python
// callable, which takes the sample (tally_tasks) and runs the detectors and
// exporters.
#pragma once
#include <Python.h>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace taskleak {

class Sampler {
public:
    // `callback(rss_bytes: int, open_fds: int, peer_closed: int)` is called
    // with the GIL held (-1 for a reading the platform does not give; see
    // open_fds.hpp); it must not raise (an exception is reported as
    // unraisable and sampling goes on).
    // Throws std::invalid_argument (ValueError in Python) for a period the
    // steady clock cannot count: not finite, not positive, under one tick,
    // or too long to add to the clock's reading (see period_of()).
    Sampler(double interval_s, PyObject *callback);
    ~Sampler();
    void start();
    // Call WITHOUT the GIL (the thread may be waiting for it). From the
    // callback itself, only asks the thread to end after this call.
    void stop();
    bool running() const { return running_; }
    uint64_t ticks() const { return ticks_; }
    // In a forked child the thread does not exist: forget it without joining.
    void forget_after_fork();

private:
    void run();
    static std::chrono::steady_clock::duration period_of(double interval_s);
    std::chrono::steady_clock::duration period_;  // checked once, in the constructor
    PyObject *callback_;                          // strong
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    bool running_ = false;
    uint64_t ticks_ = 0;
};

}  // namespace taskleak
