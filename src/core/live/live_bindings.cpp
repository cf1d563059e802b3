// Python bindings of the native listener (native_http.hpp): the Python
// server creates one per listening socket, keeps its rendered answers up to
// date, and claims the requests it must answer itself.
#include "live/blocked_now.hpp"
#include "live/native_http.hpp"
#include "watchdog/watchdog.hpp"

#include <chrono>
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <thread>

namespace nb = nanobind;
using namespace nb::literals;

namespace taskleak {

namespace {

// The Python object owns the listener through a pointer, so that a forked
// child can drop it without touching locks its parent's thread may hold.
struct NativeListener {
    live::Listener *impl = nullptr;
    ~NativeListener() {
        if (impl != nullptr) {
            nb::gil_scoped_release nogil;
            delete impl;  // stops and joins (the thread never needs the GIL)
        }
    }
    live::Listener &get() {
        if (impl == nullptr) throw nb::value_error("the native listener is closed");
        return *impl;
    }
};

std::string to_string(nb::bytes b) { return std::string(b.c_str(), b.size()); }

}  // namespace

void bind_live(nb::module_ &m) {
    nb::class_<NativeListener>(m, "NativeListener")
        .def(
            "__init__",
            [](NativeListener *self, int fd, bool unix_socket, bool loopback, nb::bytes token, double timeout,
               double handoff) {
                if (!(timeout > 0) || !(handoff > 0)) throw nb::value_error("timeout and handoff must be > 0");
                live::ListenerConfig c;
                c.listen_fd = fd;
                c.unix_socket = unix_socket;
                c.loopback = loopback;
                c.token = to_string(token);
                c.timeout_ns = (int64_t)(timeout * 1e9);
                c.handoff_ns = (int64_t)(handoff * 1e9);
                new (self) NativeListener();
                self->impl = new live::Listener(c);
            },
            "fd"_a, "unix"_a, "loopback"_a, "token"_a, "timeout"_a, "handoff"_a)
        .def("set_metrics", [](NativeListener &l, nb::bytes b) { l.get().cache().set_metrics(to_string(b)); })
        .def("set_info", [](NativeListener &l, nb::bytes b) { l.get().cache().set_info(to_string(b)); })
        .def(
            "set_static",
            [](NativeListener &l, const std::string &path, const std::string &content_type, nb::bytes body,
               bool public_file) { l.get().cache().set_static(path, {content_type, to_string(body), public_file}); },
            "path"_a, "content_type"_a, "body"_a, "public"_a,
            "Serve `body` natively for GET/HEAD `path` (any query); `public`: without the token.")
        .def(
            "set_blocked",
            [](NativeListener &l, nb::bytes head, std::vector<nb::bytes> episodes, uint64_t blocks, bool running,
               double threshold) {
                live::BlockedParts p;
                p.head = to_string(head);
                p.blocks = blocks;
                p.running = running;
                p.threshold = threshold;
                for (nb::bytes &e : episodes) p.episodes.push_back(to_string(e));
                l.get().cache().set_blocked(std::move(p));
            },
            "head"_a, "episodes"_a, "blocks"_a, "running"_a, "threshold"_a,
            "The recorded part of /api/blocked, and the watchdog's state (watchdog_stats()) it was rendered from.")
        .def(
            "take",
            [](NativeListener &l) -> nb::object {
                // Wait without the GIL; claim with it, so that a claim is
                // only made by a thread that can go on to answer.
                live::Listener &impl = l.get();
                while (true) {
                    bool more;
                    {
                        nb::gil_scoped_release nogil;
                        more = impl.wait_offer();
                    }
                    if (!more) return nb::none();
                    int fd = -1;
                    std::string head;
                    if (impl.claim(&fd, &head)) return nb::make_tuple(fd, nb::bytes(head.data(), head.size()));
                }
            },
            "The next request offered to Python: (fd, head bytes), or None once closed.")
        .def("close",
             [](NativeListener &l) {
                 if (l.impl == nullptr) return;
                 nb::gil_scoped_release nogil;
                 l.impl->stop();
             })
        .def("forget_after_fork",
             [](NativeListener &l) {
                 // In a forked child: the thread is not there; leak the object.
                 l.impl = nullptr;
             })
        .def("stats", [](NativeListener &l) {
            live::ListenerStats s = l.get().stats();
            nb::dict d;
            d["native"] = s.native;
            d["claimed"] = s.claimed;
            d["expired"] = s.expired;
            return d;
        });
    m.def("live_set_library_paths", &live::set_library_paths, "prefixes"_a, "markers"_a, "cwd"_a);
    m.def(
        "live_blocked_now",
        []() {
            std::vector<live::NowEpisode> eps;
            {
                nb::gil_scoped_release nogil;
                eps = live::blocked_now();
            }
            return nb::make_tuple(live::blocked_now_json(eps), live::blocked_now_text(eps));
        },
        "The episodes in progress now: (JSON array, one line of text).");
    m.def("live_blocked_now_metrics", []() { return live::blocked_now_metrics(); });
    m.def(
        "live_loop_gauges",
        []() {
            std::vector<live::LoopGauge> gauges;
            {
                nb::gil_scoped_release nogil;
                gauges = live::loop_gauges();
            }
            nb::list out;
            for (const live::LoopGauge &g : gauges) out.append(nb::make_tuple(g.label, g.blocked, g.seconds));
            return out;
        },
        "Each watched loop now: (stable label, blocked now, seconds blocked so far), one per label.");
    m.def(
        "watchdog_set_names",
        [](int slot, uint32_t gen, const std::string &label, const std::string &thread_name) {
            watchdog::Watchdog::get().set_names(slot, gen, label, thread_name);
        },
        "slot"_a, "gen"_a, "label"_a, "thread_name"_a);
    m.def(
        "hold_gil_for_testing",
        [](double seconds) {
            // Busy for `seconds` in C with the GIL held: a stand-in for a
            // backtracking regex, sized exactly (tests of the native path).
            auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
            volatile unsigned long spin = 0;
            while (std::chrono::steady_clock::now() < end) spin = spin + 1;
        },
        "seconds"_a);
}

}  // namespace taskleak
