// Python bindings of the watchdog, and the rendering of episodes: the only
// place sampled frames become (file, line, function) Python objects, from
// what the watchdog copied while the code objects were on the stack.
#include "cpython/remote_frames.hpp"
#include "watchdog/episode_delivery.hpp"
#include "watchdog/watchdog.hpp"

#include <nanobind/nanobind.h>

namespace nb = nanobind;
using namespace nb::literals;

namespace taskleak::watchdog {
PyObject *make_select_heartbeat_type();
PyObject *make_poller_heartbeat_type();

namespace {

PyObject *g_sink = nullptr;
bool g_frames_ok = false;

PyObject *unicode_from(const std::string &s) {
    PyObject *u = PyUnicode_DecodeUTF8(s.data(), (Py_ssize_t)s.size(), "replace");
    if (u == nullptr) {
        PyErr_Clear();
        u = PyUnicode_FromString("?");
    }
    return u;
}

// (filename, lineno, function, is_coroutine), from what was copied while the
// code object was on the stack; (None, 0, None, False) if it was unreadable.
PyObject *render_frame(const Episode &e, const cpython::RemoteFrame &f) {
    const cpython::CodeInfo *info = e.code_info(f);
    if (info == nullptr || info->filename.empty()) return Py_BuildValue("(OiOO)", Py_None, 0, Py_None, Py_False);
    int line = cpython::code_info_line(*info, f.offset);
    bool coro = (info->flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR)) != 0;
    return Py_BuildValue("(NiNO)", unicode_from(info->filename), line, unicode_from(info->qualname),
                         coro ? Py_True : Py_False);
}

PyObject *render_episode(const Episode &e) {
    PyObject *stacks = PyList_New(0);
    if (stacks == nullptr) return nullptr;
    for (const SampledStack &st : e.stacks) {
        PyObject *frames = PyList_New((Py_ssize_t)st.frames.size());
        if (frames == nullptr) {
            Py_DECREF(stacks);
            return nullptr;
        }
        for (size_t i = 0; i < st.frames.size(); ++i) {
            PyObject *fr = render_frame(e, st.frames[i]);
            if (fr == nullptr) {
                Py_DECREF(frames);
                Py_DECREF(stacks);
                return nullptr;
            }
            PyList_SET_ITEM(frames, (Py_ssize_t)i, fr);
        }
        PyObject *pair = Py_BuildValue("(IN)", st.count, frames);
        if (pair == nullptr || PyList_Append(stacks, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(stacks);
            return nullptr;
        }
        Py_DECREF(pair);
    }
    return Py_BuildValue("(KKKLLLLLIIiNL)", (unsigned long long)e.seq, (unsigned long long)e.loop_token,
                         (unsigned long long)e.thread_ident, (long long)e.start_ns, (long long)e.end_ns,
                         (long long)e.detected_ns, (long long)e.first_sample_ns, (long long)e.threshold_ns, e.samples,
                         e.other_samples, e.end, stacks, (long long)e.first_sample_precise_ns);
}

}  // namespace

void set_episode_sink(PyObject *sink) { Py_XSETREF(g_sink, sink ? Py_NewRef(sink) : nullptr); }

void deliver_closed_episodes() {
    Watchdog &w = Watchdog::get();
    if (!w.has_closed()) return;
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    std::vector<Episode> eps = w.take_closed();
    PyObject *sink = g_sink ? Py_NewRef(g_sink) : nullptr;
    for (const Episode &e : eps) {
        PyObject *t = render_episode(e);
        if (t != nullptr && sink != nullptr) {
            PyObject *r = PyObject_CallOneArg(sink, t);
            Py_XDECREF(r);
        }
        Py_XDECREF(t);
        PyErr_Clear();  // a failing sink must never reach the loop
    }
    Py_XDECREF(sink);
    PyErr_Restore(et, ev, etb);
}

}  // namespace taskleak::watchdog

namespace taskleak {

void bind_watchdog(nb::module_ &m) {
    using namespace watchdog;
    m.attr("SelectHeartbeat") = nb::steal(make_select_heartbeat_type());
    m.attr("PollerHeartbeat") = nb::steal(make_poller_heartbeat_type());
    m.def(
        "watchdog_start",
        [](double threshold, double interval) {
            if (!(threshold > 0) || !(interval > 0)) throw nb::value_error("threshold and interval must be > 0");
            g_frames_ok = cpython::remote_frames_init();
            Watchdog::get().start((int64_t)(threshold * 1e9), (int64_t)(interval * 1e9));
            return g_frames_ok;
        },
        "threshold"_a, "interval"_a, "Start the watchdog thread (or retune it). True if stacks can be sampled.");
    m.def("watchdog_stop", []() {
        // The thread never takes the GIL, but joining it may wait one tick.
        nb::gil_scoped_release nogil;
        Watchdog::get().stop();
    });
    m.def("watchdog_now_ns", &now_ns, "The watchdog's clock (CLOCK_MONOTONIC_COARSE), in ns.");
    m.def("watchdog_running", []() { return Watchdog::get().running(); });
    m.def(
        "watchdog_set_threshold",
        [](double threshold) {
            if (!(threshold > 0)) throw nb::value_error("threshold must be > 0");
            Watchdog::get().set_threshold((int64_t)(threshold * 1e9));
        },
        "threshold"_a);
    m.def(
        "watchdog_acquire",
        [](uint64_t token) {
            uint32_t gen = 0;
            int slot = Watchdog::get().acquire(token, &gen);
            if (slot < 0) throw nb::value_error("taskleak watchdog: too many watched event loops");
            return nb::make_tuple(slot, gen);
        },
        "token"_a);
    m.def("watchdog_release", [](int slot, uint32_t gen) { Watchdog::get().release(slot, gen); }, "slot"_a, "gen"_a);
    m.def(
        "watchdog_activate",
        [](int slot, uint32_t gen, uint64_t thread_ident, double period) {
            Watchdog::get().activate(slot, gen, (uintptr_t)PyThreadState_Get(), thread_ident, (int64_t)(period * 1e9));
        },
        "slot"_a, "gen"_a, "thread_ident"_a, "period"_a,
        "The loop of `slot` starts running in the calling thread; period > 0: heartbeats are periodic beats.");
    m.def(
        "watchdog_deactivate",
        [](int slot, uint32_t gen) {
            Watchdog::get().deactivate(slot, gen);
            deliver_closed_episodes();
        },
        "slot"_a, "gen"_a);
    m.def(
        "watchdog_beat",
        [](int slot, uint32_t gen) {
            Watchdog::get().beat(slot, gen);
            deliver_closed_episodes();
        },
        "slot"_a, "gen"_a);
    m.def(
        "watchdog_set_sink", [](nb::handle fn) { set_episode_sink(fn.is_none() ? nullptr : fn.ptr()); }, "fn"_a.none());
    m.def("watchdog_collect", []() { deliver_closed_episodes(); }, "Deliver closed episodes to the sink now.");
    m.def(
        "watchdog_open_episodes",
        []() {
            std::vector<OpenEpisode> eps;
            {
                nb::gil_scoped_release nogil;  // each slot's lock, never while holding the GIL
                eps = Watchdog::get().open_episodes();
            }
            nb::list out;
            for (OpenEpisode &o : eps) {
                o.episode.end_ns = o.now_ns;  // so far
                PyObject *t = render_episode(o.episode);
                if (t == nullptr) throw nb::python_error();
                out.append(nb::steal(t));
            }
            return out;
        },
        "The episodes in progress now, rendered as the sink gets closed ones (end: when copied).");
    m.def(
        "watchdog_slot_totals",
        [](int slot, uint32_t gen) {
            Totals t = Watchdog::get().slot_totals(slot, gen);
            return nb::make_tuple(t.blocks, t.blocked_ns);
        },
        "slot"_a, "gen"_a);
    m.def(
        "remote_code_info",
        [](nb::handle code) -> nb::object {
            // The watchdog's view of a code object (read as it reads sampled
            // ones): (filename, qualname, flags, line of each code unit). Tests
            // hold it against the interpreter's own co_lines().
            if (!PyCode_Check(code.ptr())) throw nb::type_error("a code object is required");
            if (!cpython::remote_frames_init()) return nb::none();
            auto *co = (PyCodeObject *)code.ptr();
            cpython::RemoteFrame f{(uintptr_t)co, (uintptr_t)co->co_filename, co->co_firstlineno, 0};
            cpython::CodeInfo info;
            if (!cpython::read_code_info(f, &info)) return nb::none();
            PyObject *bytecode = PyObject_GetAttrString(code.ptr(), "co_code");
            if (bytecode == nullptr) throw nb::python_error();
            Py_ssize_t units = PyBytes_GET_SIZE(bytecode) / 2;
            Py_DECREF(bytecode);
            nb::list lines;
            for (Py_ssize_t i = 0; i < units; ++i) lines.append(cpython::code_info_line(info, (int32_t)(2 * i)));
            return nb::make_tuple(nb::steal(unicode_from(info.filename)), nb::steal(unicode_from(info.qualname)),
                                  info.flags, lines);
        },
        "code"_a);
    m.def("watchdog_after_fork_child", []() { Watchdog::get().after_fork_child(); });
    m.def("watchdog_stats", []() {
        Watchdog &w = Watchdog::get();
        Totals t = w.totals();
        nb::dict d;
        d["running"] = w.running();
        d["threshold"] = (double)w.threshold_ns() / 1e9;
        d["interval"] = (double)w.interval_ns() / 1e9;
        d["stacks"] = cpython::remote_frames_mode();
        d["blocks"] = t.blocks;
        d["blocked_seconds"] = (double)t.blocked_ns / 1e9;
        d["dropped"] = w.dropped();
        d["samples"] = w.samples_taken();
        return d;
    });
}

}  // namespace taskleak
