// See native_http.hpp. One thread, one poll() loop over the listening socket
// and the connections it reads or writes; no Python API is called here.
#include "live/native_http.hpp"

#include "live/blocked_now.hpp"
#include "live/http_head.hpp"
#include "watchdog/watchdog.hpp"

#include <cmath>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace taskleak::live {

namespace {

constexpr size_t MAX_CONNS = 256;  // read or written at once; beyond, new ones are closed at once
constexpr int64_t FORBIDDEN_READ_NS = 1000000000;

int64_t mono_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *reason(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 408:
            return "Request Timeout";
        case 421:
            return "Misdirected Request";
        case 431:
            return "Request Header Fields Too Large";
        case 503:
            return "Service Unavailable";
        default:
            return "Error";
    }
}

bool same_secret(const std::string &a, const std::string &b) {
    // Constant time in the content (hmac.compare_digest's promise).
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    size_t n = a.size();
    for (size_t i = 0; i < n; ++i) diff |= (unsigned char)(a[i] ^ (i < b.size() ? b[i] : 0));
    return diff == 0;
}

std::string lower(std::string s) {
    for (char &c : s) c = (char)std::tolower((unsigned char)c);
    return s;
}

// Whatever else is wrong with it, a request that says HEAD gets no body
// (RFC 9110 9.3.2): not a 4xx, not the 503 (http_server.py does the same).
bool asks_head(const std::string &in) { return in.compare(0, 5, "HEAD ") == 0; }

std::string py_strip(const std::string &s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace((unsigned char)s[a])) ++a;
    while (b > a && std::isspace((unsigned char)s[b - 1])) --b;
    return s.substr(a, b - a);
}

}  // namespace

struct Listener::Conn {
    enum : int { READING, OFFERED, WRITING } state = READING;
    int fd = -1;
    std::string in;
    std::string out;
    size_t sent = 0;
    int64_t deadline = 0;
    int64_t offered_at = 0;
    bool forbidden = false;
    bool blocked_fallback = false;  // offered /api/blocked: answered here if Python does not take it
    uid_t uid = 0;
    std::shared_ptr<Offer> offer;
};

Listener::Listener(const ListenerConfig &config) : cfg_(config) {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    thread_ = std::thread([this] { run(); });
}

Listener::~Listener() { stop(); }

void Listener::stop() {
    if (stopped_) return;
    stopped_ = true;
    stopping_.store(true);
    uint64_t one = 1;
    if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof one);
    { std::lock_guard<std::mutex> g(offers_mu_); }
    offers_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (wake_fd_ >= 0) close(wake_fd_);
    wake_fd_ = -1;
}

ListenerStats Listener::stats() const {
    ListenerStats s;
    s.native = native_.load();
    s.claimed = claimed_.load();
    s.expired = expired_.load();
    return s;
}

bool Listener::wait_offer() {
    std::unique_lock<std::mutex> lk(offers_mu_);
    offers_cv_.wait(lk, [this] {
        if (stopping_.load()) return true;
        for (const auto &o : offers_)
            if (o->state.load() == Offer::OFFERED) return true;
        return false;
    });
    return !stopping_.load();
}

bool Listener::claim(int *fd, std::string *head) {
    std::lock_guard<std::mutex> lk(offers_mu_);
    while (!offers_.empty()) {
        std::shared_ptr<Offer> o = offers_.front();
        offers_.pop_front();
        int expect = Offer::OFFERED;
        if (o->state.compare_exchange_strong(expect, Offer::CLAIMED)) {
            *fd = o->fd;
            *head = o->head;
            claimed_.fetch_add(1, std::memory_order_relaxed);
            return true;
        }
    }
    return false;
}

void Listener::answer(Conn &c, int status, const char *content_type, const std::string &body, bool head_only,
                      const std::vector<std::pair<std::string, std::string>> &extra) {
    // The same head as http_server.py's _send.
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) +
                      "\r\nContent-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                      "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n"
                      "Referrer-Policy: no-referrer\r\n";
    for (const auto &kv : extra) out += kv.first + ": " + kv.second + "\r\n";
    out += "\r\n";
    if (!head_only && !asks_head(c.in)) out += body;
    c.out = std::move(out);
    c.sent = 0;
    c.state = Conn::WRITING;
    c.deadline = mono_ns() + cfg_.timeout_ns;
    flush(c);
}

void Listener::flush(Conn &c) {
    while (c.sent < c.out.size()) {
        ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (n > 0) {
            c.sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // poll for POLLOUT
        c.sent = c.out.size();                                           // the peer is gone: nothing more to send
    }
}

void Listener::offer(Conn &c, int64_t bound_ns) {
    auto o = std::make_shared<Offer>();
    o->fd = c.fd;
    o->head = c.in;
    c.offer = o;
    c.state = Conn::OFFERED;
    c.offered_at = mono_ns();
    c.deadline = c.offered_at + bound_ns;
    {
        std::lock_guard<std::mutex> lk(offers_mu_);
        offers_.push_back(std::move(o));
    }
    offers_cv_.notify_one();
}

bool Listener::only_slow() {
    // Watched loops, none blocked now (an episode opens at the watchdog's
    // threshold, so a loop that is stuck shows up here within it).
    std::vector<LoopGauge> loops = loop_gauges();
    if (loops.empty()) return false;  // nothing watched: nothing says the loop runs
    for (const LoopGauge &l : loops)
        if (l.blocked) return false;
    return true;
}

void Listener::answer_unclaimed(Conn &c) {
    // Python did not take the request: say why instead of hanging.
    std::vector<NowEpisode> now = blocked_now();
    char bound[32];
    snprintf(bound, sizeof bound, "%.1f", (double)(mono_ns() - c.offered_at) / 1e9);
    std::string body;
    if (!now.empty()) body = "the event loop is blocked now: " + blocked_now_text(now) + "\n";
    else
        body = "Python did not take this request within " + std::string(bound) +
               " s (another thread holds the GIL; no watched event loop is blocked now)\n";
    body += "this answer needs the Python interpreter, which did not run for " + std::string(bound) +
            " s; /metrics, /api/blocked and /api/info answer without it\n";
    answer(c, 503, "text/plain; charset=utf-8", body, false, {{"Retry-After", "1"}});
    expired_.fetch_add(1, std::memory_order_relaxed);
}

void Listener::answer_blocked(Conn &c, const Head &h) {
    std::string raw = h.param("limit");
    size_t limit = 20;  // blocked_loops.DEFAULT_EPISODES
    if (!raw.empty()) {
        limit = 0;
        for (char ch : raw) limit = limit * 10 + (size_t)(ch - '0');
    }
    std::shared_ptr<const BlockedParts> parts = cache_.blocked();
    std::vector<NowEpisode> now = blocked_now();
    std::string body = "{";
    body += parts->head.empty() ? std::string("\"watching\": null") : parts->head;
    body += ", \"episodes\": [";
    for (size_t i = 0; i < parts->episodes.size() && i < limit; ++i) {
        if (i) body += ", ";
        body += parts->episodes[i];
    }
    body += "], \"blocked_now\": ";
    body += now.empty() ? "false" : "true";
    body += ", \"in_progress\": " + blocked_now_json(now) + ", \"answered_by\": \"native\"}";
    answer(c, 200, "application/json", body, h.head_only);
}

void Listener::route(Conn &c) {
    native_.fetch_add(1, std::memory_order_relaxed);
    if (c.forbidden) {
        answer(c, 403, "text/plain; charset=utf-8",
               "peer uid " + std::to_string(c.uid) + " is not allowed: only uid " + std::to_string(geteuid()) +
                   " (and root) may read this process\n",
               false);
        return;
    }
    Head h = parse_head(c.in);
    // The dashboard's page and assets: static bytes registered by Python,
    // served here so that a dashboard opened while the loop is stuck loads.
    std::shared_ptr<const StaticAnswer> file = h.simple ? cache_.static_answer(h.path) : nullptr;
    bool mine = h.simple && (h.path == "/metrics" || h.path == "/api/blocked" || h.path == "/api/info" || file);
    if (mine && h.path == "/api/blocked") {
        std::string raw = h.param("limit");
        bool ok = raw.size() <= 3;
        for (char ch : raw) ok = ok && ch >= '0' && ch <= '9';
        if (ok && !raw.empty() && std::stoi(raw) > 100) ok = false;  // blocked_loops.MAX_EPISODES
        mine = ok;                                                   // else Python says what is wrong with it
    }
    if (mine && !cfg_.unix_socket) {
        if (!cfg_.token.empty() && !(file && file->public_file)) {  // (as http_server.py: /assets/ need no token)
            const std::string *auth = h.header("authorization");
            std::string given = auth != nullptr ? *auth : "";
            if (lower(given.substr(0, 7)) == "bearer ") given = py_strip(given.substr(7));
            else given = h.param("token");
            if (!same_secret(given, cfg_.token)) {
                answer(c, 401, "text/plain; charset=utf-8",
                       "a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)\n", h.head_only,
                       {{"WWW-Authenticate", "Bearer realm=\"taskleak\""}});
                return;
            }
        } else if (cfg_.token.empty() && cfg_.loopback) {
            const std::string *host = h.header("host");
            int lb = host == nullptr ? 1 : host_is_loopback(*host);
            if (lb == 0) {
                answer(c, 421, "text/plain; charset=utf-8",
                       "this endpoint only answers requests addressed to a loopback host name\n", h.head_only);
                return;
            }
            if (lb < 0) mine = false;  // an unusual Host: Python decides
        }
    }
    if (!mine) {
        native_.fetch_sub(1, std::memory_order_relaxed);
        offer(c, cfg_.handoff_ns);
        return;
    }
    if (h.path == "/api/blocked") {
        // Rendered before an episode was recorded (or watching changed):
        // Python answers fresh if it comes soon, else the rendered one serves.
        std::shared_ptr<const BlockedParts> parts = cache_.blocked();
        watchdog::Watchdog &w = watchdog::Watchdog::get();
        bool stale = w.totals().blocks != parts->blocks || w.running() != parts->running ||
                     (parts->running && std::llround(parts->threshold * 1e9) != w.threshold_ns());
        if (stale) {
            native_.fetch_sub(1, std::memory_order_relaxed);
            c.blocked_fallback = true;
            offer(c, cfg_.fresh_ns);
            return;
        }
    }
    if (file) {
        answer(c, 200, file->content_type.c_str(), file->body, h.head_only);
    } else if (h.path == "/metrics") {
        std::shared_ptr<const std::string> body = cache_.metrics();
        answer(c, 200, "text/plain; version=0.0.4; charset=utf-8", *body + blocked_now_metrics(), h.head_only);
    } else if (h.path == "/api/info") {
        answer(c, 200, "application/json", *cache_.info(), h.head_only);
    } else {
        answer_blocked(c, h);
    }
}

void Listener::on_readable(Conn &c) {
    char buf[4096];
    while (true) {
        ssize_t n = recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
            c.in.append(buf, (size_t)n);
            size_t end = head_end(c.in);
            if (end != std::string::npos && end <= MAX_HEAD_BYTES) {
                c.in.resize(end);
                route(c);
                return;
            }
            if (c.in.size() > MAX_HEAD_BYTES || (end != std::string::npos && end > MAX_HEAD_BYTES)) {
                if (c.forbidden) return route(c);
                answer(c, 431, "text/plain; charset=utf-8",
                       "request head larger than " + std::to_string(MAX_HEAD_BYTES) + " bytes\n", false);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        // Closed (or reset) before a whole head: as http_request.py, nothing to answer
        // (a partial head gets a 400 from Python).
        if (n == 0 && !c.in.empty() && !c.forbidden) {
            answer(c, 400, "text/plain; charset=utf-8", "connection closed in the middle of the request head\n", false);
            return;
        }
        if (c.forbidden && n == 0) return route(c);
        c.out.clear();
        c.sent = 0;
        c.state = Conn::WRITING;  // nothing to write: closed on the next pass
        return;
    }
}

void Listener::accept_all(std::vector<std::unique_ptr<Conn>> &conns) {
    for (int i = 0; i < 64; ++i) {
        int fd = accept4(cfg_.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            return;  // EAGAIN, or a transient error (EMFILE...): try on the next wake-up
        }
        if (conns.size() >= MAX_CONNS) {
            close(fd);
            continue;
        }
        auto c = std::make_unique<Conn>();
        c->fd = fd;
        c->deadline = mono_ns() + cfg_.timeout_ns;
        if (cfg_.unix_socket) {
            ucred cred{};
            socklen_t len = sizeof cred;
            if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
                close(fd);
                continue;
            }
            c->uid = cred.uid;
            if (cred.uid != geteuid() && cred.uid != 0) {
                // Nothing is read for this peer but its request head, so that
                // the refusal reaches it instead of a reset (as http_server.py).
                c->forbidden = true;
                c->deadline = mono_ns() + FORBIDDEN_READ_NS;
            }
        }
        conns.push_back(std::move(c));
    }
}

void Listener::run() {
    std::vector<std::unique_ptr<Conn>> conns;
    std::vector<pollfd> fds;
    while (!stopping_.load()) {
        fds.clear();
        fds.push_back({wake_fd_, POLLIN, 0});
        fds.push_back({cfg_.listen_fd, POLLIN, 0});
        int64_t now = mono_ns();
        int64_t next = now + 1000000000;
        for (auto &c : conns) {
            short ev = c->state == Conn::READING ? POLLIN : c->state == Conn::WRITING ? POLLOUT : 0;
            fds.push_back({c->state == Conn::OFFERED ? -1 : c->fd, ev, 0});
            if (c->deadline < next) next = c->deadline;
        }
        int wait_ms = next <= now ? 0 : (int)((next - now + 999999) / 1000000);
        int rc = poll(fds.data(), fds.size(), wait_ms);
        if (rc < 0 && errno != EINTR) break;
        if (stopping_.load()) break;
        if (fds[0].revents) {
            uint64_t v;
            (void)!read(wake_fd_, &v, sizeof v);
        }
        size_t n_before = conns.size();
        for (size_t i = 0; i < n_before; ++i) {
            Conn &c = *conns[i];
            short re = fds[i + 2].revents;
            if (c.state == Conn::READING && (re & (POLLIN | POLLHUP | POLLERR))) on_readable(c);
            else if (c.state == Conn::WRITING && (re & (POLLOUT | POLLHUP | POLLERR))) flush(c);
        }
        if (fds[1].revents & POLLIN) accept_all(conns);
        // Deadlines, claims, finished answers.
        now = mono_ns();
        for (size_t i = 0; i < conns.size();) {
            Conn &c = *conns[i];
            bool drop = false, keep_fd = false;
            if (c.state == Conn::OFFERED) {
                int st = c.offer->state.load();
                if (st == Offer::CLAIMED) {
                    drop = keep_fd = true;  // the fd is Python's now
                } else if (now >= c.deadline && !c.blocked_fallback && now - c.offered_at < cfg_.patience_ns &&
                           only_slow()) {
                    c.deadline = now + 100000000;  // look again in 100 ms
                } else if (now >= c.deadline) {
                    int expect = Offer::OFFERED;
                    if (c.offer->state.compare_exchange_strong(expect, Offer::EXPIRED)) {
                        {
                            std::lock_guard<std::mutex> lk(offers_mu_);
                            for (auto it = offers_.begin(); it != offers_.end(); ++it)
                                if (it->get() == c.offer.get()) {
                                    offers_.erase(it);
                                    break;
                                }
                        }
                        c.offer.reset();
                        if (c.blocked_fallback) {
                            native_.fetch_add(1, std::memory_order_relaxed);
                            answer_blocked(c, parse_head(c.in));
                        } else {
                            answer_unclaimed(c);
                        }
                    } else {
                        drop = keep_fd = true;
                    }
                }
            } else if (c.state == Conn::READING && now >= c.deadline) {
                if (c.forbidden) route(c);
                else answer(c, 408, "text/plain; charset=utf-8", "request not received in time\n", false);
            } else if (c.state == Conn::WRITING && (c.sent >= c.out.size() || now >= c.deadline)) {
                drop = true;
            }
            if (drop) {
                if (!keep_fd) {
                    shutdown(c.fd, SHUT_WR);
                    close(c.fd);
                }
                conns[i] = std::move(conns.back());
                conns.pop_back();
                continue;
            }
            ++i;
        }
    }
    // Stopping: what is still ours is closed; offers not yet claimed are withdrawn.
    for (auto &c : conns) {
        if (c->state == Conn::OFFERED) {
            int expect = Offer::OFFERED;
            if (!c->offer->state.compare_exchange_strong(expect, Offer::EXPIRED)) continue;
        }
        close(c->fd);
    }
    std::lock_guard<std::mutex> lk(offers_mu_);
    offers_.clear();
}

}  // namespace taskleak::live
