// The native listener: a thread that owns the debug endpoint's listening
// socket and never takes the GIL, so the process answers while its event
// loop is stuck in a C call that holds the GIL.
//
// It accepts each connection and reads its request head itself. GET/HEAD of
// /metrics, /api/blocked and /api/info are answered here, from what Python
// rendered ahead of time (answer_cache.hpp) and the watchdog's live state
// (blocked_now.hpp), after the same checks as the Python server (peer uid on
// the agent's socket, token, Host, head limits). Every other request is
// offered to Python: a Python thread waiting in wait_offer() (GIL released)
// claims it with the GIL held and answers it as before. If no Python thread
// has claimed it within the hand-off bound, the listener answers 503 itself,
// saying which loop is blocked, for how long and at which line. A claim is
// one compare-and-swap on the offer: exactly one side answers.
#pragma once
#include "live/answer_cache.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace taskleak::live {

struct ListenerConfig {
    int listen_fd = -1;        // non-blocking, listening; stays the caller's to close (after stop())
    bool unix_socket = false;  // the agent: peers' uid is checked instead of token and Host
    bool loopback = true;
    std::string token;                // empty: none
    int64_t timeout_ns = 5000000000;  // to receive a head, and again to send an answer
    int64_t handoff_ns = 1000000000;  // how long Python has to claim a request
    // How long Python may take when the watchdog watches a loop and none is
    // blocked: the delay is then a busy machine or a GIL convoy, which ends
    // on its own, and a 503 would only turn a slow answer into a failed one.
    int64_t patience_ns = 5000000000;
    // How long Python has to claim /api/blocked when the rendered answer is
    // stale (an episode recorded since); then it is answered from it anyway.
    int64_t fresh_ns = 150000000;
};

struct Offer {
    enum : int { OFFERED = 0, CLAIMED = 1, EXPIRED = 2 };
    std::atomic<int> state{OFFERED};
    int fd = -1;
    std::string head;
};

struct ListenerStats {
    uint64_t native = 0;   // answered here
    uint64_t claimed = 0;  // answered by Python
    uint64_t expired = 0;  // offered, not claimed in time: 503 from here
};

class Listener {
public:
    explicit Listener(const ListenerConfig &config);
    ~Listener();  // stop()
    Listener(const Listener &) = delete;
    Listener &operator=(const Listener &) = delete;

    void stop();  // joins the thread; closes what it still owns (not claimed connections)
    AnswerCache &cache() { return cache_; }
    ListenerStats stats() const;

    // The Python side. wait_offer (without the GIL): until a connection is
    // offered or the listener stops (false). claim (with the GIL): take
    // the oldest offer not yet expired; the fd is then the caller's.
    bool wait_offer();
    bool claim(int *fd, std::string *head);

private:
    struct Conn;
    void run();
    void accept_all(std::vector<std::unique_ptr<Conn>> &conns);
    void on_readable(Conn &c);
    void route(Conn &c);
    void offer(Conn &c, int64_t bound_ns);
    void answer(Conn &c, int status, const char *content_type, const std::string &body, bool head_only,
                const std::vector<std::pair<std::string, std::string>> &extra = {});
    void answer_blocked(Conn &c, const struct Head &h);
    void answer_unclaimed(Conn &c);
    bool only_slow();
    void flush(Conn &c);

    ListenerConfig cfg_;
    AnswerCache cache_;
    int wake_fd_ = -1;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    bool stopped_ = false;

    std::mutex offers_mu_;
    std::condition_variable offers_cv_;
    std::deque<std::shared_ptr<Offer>> offers_;

    std::atomic<uint64_t> native_{0}, claimed_{0}, expired_{0};
};

}  // namespace taskleak::live
