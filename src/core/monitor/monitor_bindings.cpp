// Bindings of the monitor's native parts (window_detector, task_tally,
// sampler, rss, open_fds). Glue only: the Monitor, its alerts and exporters are
// Python (taskleak/monitor/).
#include "monitor/open_fds.hpp"
#include "monitor/rss.hpp"
#include "monitor/sampler.hpp"
#include "monitor/task_tally.hpp"
#include "monitor/window_detector.hpp"
#include "tracking/tracker.hpp"
#include <cmath>
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

namespace nb = nanobind;
using namespace nb::literals;

namespace taskleak {

nb::object render_stack(uint32_t id);  // module.cpp

static nb::object anomaly_tuple(const Anomaly &a) {
    if (a.kind == AnomalyKind::None) return nb::none();
    return nb::make_tuple(a.kind == AnomalyKind::Spike ? "spike" : "trend", a.value, a.mean, a.stddev, a.threshold,
                          a.slope_per_sample, a.samples);
}

void bind_monitor(nb::module_ &m) {
    nb::class_<WindowDetector>(m, "WindowDetector")
        .def(
            "__init__",
            [](WindowDetector *self, int window, double sigma, int consecutive, double min_stddev, double min_rise,
               double min_rise_ratio, double trend_z, int trend_blocks, int horizon, int warmup) {
                DetectorConfig c;
                c.window = window;
                c.sigma = sigma;
                c.consecutive = consecutive;
                c.min_stddev = min_stddev;
                c.min_rise = min_rise;
                c.min_rise_ratio = min_rise_ratio;
                c.trend_z = trend_z;
                c.trend_blocks = trend_blocks;
                c.horizon = horizon;
                c.warmup = warmup;
                new (self) WindowDetector(c);
            },
            "window"_a, "sigma"_a, "consecutive"_a, "min_stddev"_a, "min_rise"_a, "min_rise_ratio"_a, "trend_z"_a,
            "trend_blocks"_a, "horizon"_a, "warmup"_a)
        .def(
            "update", [](WindowDetector &d, double v) { return anomaly_tuple(d.update(v)); }, "value"_a,
            "None, or (kind, value, mean, stddev, threshold, slope_per_sample, samples) when an episode starts.")
        .def(
            "update_many",
            [](WindowDetector &d, const std::vector<double> &xs) {
                // A whole series in one call: (index, anomaly tuple) per alert.
                nb::list out;
                for (size_t i = 0; i < xs.size(); ++i) {
                    Anomaly a = d.update(xs[i]);
                    if (a.kind != AnomalyKind::None) out.append(nb::make_tuple(i, anomaly_tuple(a)));
                }
                return out;
            },
            "values"_a)
        .def_prop_ro("in_episode", &WindowDetector::in_episode)
        .def_prop_ro("episode_kind",
                     [](const WindowDetector &d) -> nb::object {
                         switch (d.episode_kind()) {
                             case AnomalyKind::Spike:
                                 return nb::str("spike");
                             case AnomalyKind::Trend:
                                 return nb::str("trend");
                             default:
                                 return nb::none();
                         }
                     })
        .def_prop_ro("count", &WindowDetector::count)
        .def_prop_ro("alerts", &WindowDetector::alerts)
        .def("reset", &WindowDetector::reset)
        .def_static("mann_kendall_z", &WindowDetector::mann_kendall_z, "values"_a)
        .def_static("theil_sen_slope", &WindowDetector::theil_sen_slope, "values"_a);

    m.def(
        "tally_tasks",
        [](int64_t max_hold_ns, nb::object stale_after) {
            // The code objects are held by the list the caller passed.
            std::vector<StaleAfter> after;
            if (!stale_after.is_none()) {
                for (nb::handle item : stale_after) {
                    nb::tuple e = nb::cast<nb::tuple>(item);
                    if (e.size() != 3) throw nb::value_error("stale_after: (stack_id, code, ms) tuples");
                    const int64_t stack = nb::cast<int64_t>(e[0]);
                    if (stack < 0 || stack >= (int64_t)StackTable::DROPPED) continue;  // unknown or dropped stacks
                    after.push_back(StaleAfter{(uint32_t)stack, e[1].ptr(), (int64_t)nb::cast<double>(e[2])});
                }
            }
            TaskTally t;
            if (!tally_tasks(t, max_hold_ns, after)) {
                PyErr_SetString(PyExc_RuntimeError,
                                "taskleak: tally_tasks() called from inside a count in this thread");
                throw nb::python_error();
            }
            nb::list groups;
            auto hist = [](bool has, const AgeHistogram &h) -> nb::object {
                if (!has) return nb::none();
                return nb::bytes((const char *)h.data(), sizeof(uint32_t) * h.size());
            };
            for (GroupTally &g : t.groups) {
                groups.append(nb::make_tuple(g.stack == StackTable::NONE      ? -1
                                             : g.stack == StackTable::DROPPED ? -2
                                                                              : (int64_t)g.stack,
                                             nb::borrow(g.code), g.pending, g.done, g.oldest_ns,
                                             g.example ? nb::borrow(g.example) : nb::object(nb::none()),
                                             hist(g.has_ages, g.ages), hist(g.has_lifetimes, g.lifetimes)));
            }
            nb::dict d;
            d["live"] = t.live;
            d["pending"] = t.pending;
            d["done"] = t.done;
            d["groups"] = groups;
            d["gil_ns"] = t.gil_ns;
            d["max_hold_ns"] = t.max_hold_ns;
            d["holds"] = t.holds;
            d["wall_ns"] = t.wall_ns;
            d["created_total"] = tracker().tracked_total;
            d["generation"] = t.generation;
            d["gone_during_read"] = t.gone_during_read;
            d["read_ns"] = t.read_ns;
            return d;
        },
        "max_hold_ns"_a = 0, "stale_after"_a = nb::none(),
        "Count tracked tasks by state and group (stack_id, code, pending, done, oldest_ns, example_weakref, "
        "ages, lifetimes); stale_after: (stack_id, code, ms) of groups whose example is their newest task that "
        "old.");
    m.attr("AGE_BUCKETS") = AGE_BUCKETS;
    m.def(
        "age_bucket_floor_ms",
        [](int b) -> double {
            if (b <= 0) return 0.0;
            const int k = (b - 1) / 2;
            return std::ldexp(1.0, k) * ((b - 1) % 2 ? 1.5 : 1.0);
        },
        "bucket"_a, "The least age in milliseconds that falls in `bucket` of tally_tasks()'s histograms.");
    m.def("tally_mode", []() { return std::string(tally_mode()); });
    m.def("_set_tally_read_pause", &set_tally_read_pause, "ns"_a,
          "Tests only: sleep `ns` inside each 64-slot word of tally_tasks()'s GIL-free read.");
    m.def(
        "probe_task_fields",
        [](nb::handle p1, nb::handle p2, nb::handle done, nb::handle cancelled, nb::handle c1, nb::handle c2) {
            return probe_task_fields(p1.ptr(), p2.ptr(), done.ptr(), cancelled.ptr(), c1.ptr(), c2.ptr());
        },
        "pending1"_a, "pending2"_a, "done"_a, "cancelled"_a, "coro1"_a, "coro2"_a);
    m.def("rss_bytes", &current_rss_bytes, "Resident set size in bytes, -1 if unknown.");
    m.def(
        "open_fds",
        [] {
            const OpenFds f = current_open_fds();
            return nb::make_tuple(f.open, f.peer_closed);
        },
        "(file descriptors the process has open, TCP sockets among them in CLOSE_WAIT), -1 if unknown.");
    m.def(
        "stack_frames",
        [](int64_t id) -> nb::object {
            if (id < 0) return nb::none();
            return render_stack((uint32_t)id);
        },
        "id"_a, "A creation stack as (filename, lineno, function) tuples, innermost first, or None.");

    nb::class_<Sampler>(m, "Sampler")
        .def(
            "__init__",
            [](Sampler *self, double interval, nb::handle callback) {
                if (!(interval > 0)) throw nb::value_error("interval must be > 0");
                if (!PyCallable_Check(callback.ptr())) throw nb::type_error("callback must be callable");
                new (self) Sampler(interval, callback.ptr());
            },
            "interval"_a, "callback"_a)
        .def("start", &Sampler::start)
        .def("stop", &Sampler::stop, nb::call_guard<nb::gil_scoped_release>())
        .def("forget_after_fork", &Sampler::forget_after_fork)
        .def_prop_ro("running", &Sampler::running)
        .def_prop_ro("ticks", &Sampler::ticks);
}

}  // namespace taskleak
