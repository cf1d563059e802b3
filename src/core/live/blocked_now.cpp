// See blocked_now.hpp.
#include "live/blocked_now.hpp"

#include "cpython/remote_frames.hpp"
#include "watchdog/watchdog.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <new>
#include <pthread.h>

namespace taskleak::live {

namespace {

std::mutex g_paths_mu;
std::vector<std::string> g_prefixes;
std::vector<std::string> g_markers;
std::string g_cwd;

constexpr size_t MAX_STACKS = 3;   // as blocked_loops.py
constexpr size_t MAX_FRAMES = 20;  // as blocked_loops.py

bool starts_with(const std::string &s, const std::string &p) { return s.compare(0, p.size(), p) == 0; }

bool is_library(const std::string &filename) {
    if (filename.empty()) return true;  // unreadable: never "the line"
    std::lock_guard<std::mutex> g(g_paths_mu);
    for (const std::string &p : g_prefixes)
        if (!p.empty() && starts_with(filename, p)) return true;
    for (const std::string &m : g_markers)
        if (!m.empty() && filename.find(m) != std::string::npos) return true;
    return false;
}

// As frame.short_path: relative to the library directory or the working directory.
std::string short_path(const std::string &filename) {
    std::lock_guard<std::mutex> g(g_paths_mu);
    for (const std::string &m : g_markers) {
        size_t at = filename.rfind(m);
        if (!m.empty() && at != std::string::npos) return filename.substr(at + m.size());
    }
    for (const std::string &p : g_prefixes)
        if (!p.empty() && starts_with(filename, p)) return filename.substr(p.size());
    if (!g_cwd.empty() && starts_with(filename, g_cwd)) return filename.substr(g_cwd.size());
    return filename;
}

// "re.match" for re/__init__.py's match, "json.decoder.raw_decode"-ish
// otherwise: the module's last name and the function.
std::string call_name(const NowFrame &f) {
    std::string base = f.filename;
    size_t slash = base.rfind('/');
    std::string dir = slash == std::string::npos ? "" : base.substr(0, slash);
    base = slash == std::string::npos ? base : base.substr(slash + 1);
    if (base.size() > 3 && base.compare(base.size() - 3, 3, ".py") == 0) base.resize(base.size() - 3);
    if (base == "__init__") {
        size_t s2 = dir.rfind('/');
        base = s2 == std::string::npos ? dir : dir.substr(s2 + 1);
    }
    std::string fn = f.function;
    size_t dot = fn.rfind('.');
    if (dot != std::string::npos) fn = fn.substr(dot + 1);
    return base.empty() ? fn : base + "." + fn;
}

double wall_now() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

std::string num(double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

std::string frame_json(const NowFrame &f) {
    if (f.filename.empty()) return "{\"filename\": null, \"lineno\": 0, \"function\": null, \"short\": \"?\"}";
    std::string shortened = short_path(f.filename) + ":" + std::to_string(f.line) + " in " + f.function;
    return "{\"filename\": " + json_string(f.filename) + ", \"lineno\": " + std::to_string(f.line) +
           ", \"function\": " + json_string(f.function) + ", \"short\": " + json_string(shortened) + "}";
}

std::string prom_label(const std::string &s) {
    std::string out;
    for (char c : s) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

}  // namespace

void set_library_paths(const std::vector<std::string> &prefixes, const std::vector<std::string> &markers,
                       const std::string &cwd) {
    // A listener thread may hold the lock when the process forks: the child
    // gets a fresh one (its listener is gone; blocked_now.cpp is shared).
    static bool once = [] {
        pthread_atfork(nullptr, nullptr, [] { new (&g_paths_mu) std::mutex(); });
        return true;
    }();
    (void)once;
    std::lock_guard<std::mutex> g(g_paths_mu);
    g_prefixes = prefixes;
    g_markers = markers;
    g_cwd = cwd;
}

std::string json_string(const std::string &s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"') out += "\\\"";
        else if (c == '\\') out += "\\\\";
        else if (c < 0x20 || c == 0x7f) {
            char buf[8];
            snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else out += (char)c;  // UTF-8 passes through (names were decoded as UTF-8 by the reader)
    }
    return out + "\"";
}

std::vector<NowEpisode> blocked_now() {
    std::vector<NowEpisode> out;
    double wall = wall_now();
    for (const watchdog::OpenEpisode &o : watchdog::Watchdog::get().open_episodes()) {
        const watchdog::Episode &e = o.episode;
        NowEpisode n;
        n.loop = o.label.empty() ? "loop #" + std::to_string(e.loop_token) : o.label;
        n.thread = o.thread_name.empty() ? "thread " + std::to_string(e.thread_ident) : o.thread_name;
        n.seq = e.seq;
        n.duration = (double)std::max<int64_t>(0, o.now_ns - e.start_ns) / 1e9;
        n.threshold = (double)e.threshold_ns / 1e9;
        n.start_wall = wall - n.duration;
        n.samples = e.samples;
        for (const watchdog::SampledStack &st : e.stacks) {
            NowStack ns;
            ns.count = st.count;
            for (const cpython::RemoteFrame &f : st.frames) {
                NowFrame nf;
                const cpython::CodeInfo *info = e.code_info(f);
                if (info != nullptr && !info->filename.empty()) {
                    nf.filename = info->filename;
                    nf.function = info->qualname;
                    nf.line = cpython::code_info_line(*info, f.offset);
                }
                ns.frames.push_back(std::move(nf));
            }
            n.stacks.push_back(std::move(ns));
        }
        std::stable_sort(n.stacks.begin(), n.stacks.end(),
                         [](const NowStack &a, const NowStack &b) { return a.count > b.count; });
        if (!n.stacks.empty() && !n.stacks[0].frames.empty()) {
            const std::vector<NowFrame> &fr = n.stacks[0].frames;
            n.site = 0;
            for (size_t i = 0; i < fr.size(); ++i)
                if (!is_library(fr[i].filename)) {
                    n.site = (int)i;
                    break;
                }
            if (n.site > 0 && !fr[0].filename.empty()) n.callee = call_name(fr[0]);
        }
        out.push_back(std::move(n));
    }
    return out;
}

std::string blocked_now_json(const std::vector<NowEpisode> &eps) {
    std::string out = "[";
    for (size_t k = 0; k < eps.size(); ++k) {
        const NowEpisode &n = eps[k];
        unsigned sampled = 0;
        for (const NowStack &s : n.stacks) sampled += s.count;
        if (k) out += ", ";
        out += "{\"seq\": " + std::to_string(n.seq) + ", \"loop\": " + json_string(n.loop) +
               ", \"thread\": " + json_string(n.thread) + ", \"start\": " + num(n.start_wall) +
               ", \"duration\": " + num(n.duration) + ", \"threshold\": " + num(n.threshold) +
               ", \"samples\": " + std::to_string(n.samples) + ", \"in_progress\": true, \"ended\": null";
        out += ", \"site\": ";
        out += n.site >= 0 ? frame_json(n.stacks[0].frames[n.site]) : "null";
        out += ", \"call\": " + (n.callee.empty() ? std::string("null") : json_string(n.callee));
        out += ", \"text\": " + json_string(blocked_now_text({n}));
        out += ", \"stacks\": [";
        for (size_t i = 0; i < n.stacks.size() && i < MAX_STACKS; ++i) {
            const NowStack &s = n.stacks[i];
            if (i) out += ", ";
            out += "{\"count\": " + std::to_string(s.count) +
                   ", \"share\": " + (sampled ? num((double)s.count / sampled) : std::string("null")) +
                   ", \"frames\": [";
            for (size_t j = 0; j < s.frames.size() && j < MAX_FRAMES; ++j) {
                if (j) out += ", ";
                out += frame_json(s.frames[j]);
            }
            out += "], \"frames_truncated\": " +
                   std::to_string(s.frames.size() > MAX_FRAMES ? s.frames.size() - MAX_FRAMES : 0) + "}";
        }
        out += "], \"stacks_truncated\": " +
               std::to_string(n.stacks.size() > MAX_STACKS ? n.stacks.size() - MAX_STACKS : 0) + "}";
    }
    return out + "]";
}

std::string blocked_now_text(const std::vector<NowEpisode> &eps) {
    std::string out;
    for (const NowEpisode &n : eps) {
        if (!out.empty()) out += "; ";
        char dur[32];
        snprintf(dur, sizeof dur, "%.1f s", n.duration);
        out += n.loop + " blocked for " + dur;
        if (n.site >= 0) {
            const NowFrame &f = n.stacks[0].frames[n.site];
            if (!f.filename.empty())
                out += " at " + short_path(f.filename) + ":" + std::to_string(f.line) + " in " + f.function;
            if (!n.callee.empty()) out += " (" + n.callee + ")";
        } else {
            out += " (line not sampled yet)";
        }
    }
    return out;
}

std::vector<LoopGauge> loop_gauges() {
    std::vector<watchdog::LoopNow> loops = watchdog::Watchdog::get().loops_now();
    std::sort(loops.begin(), loops.end(), [](const watchdog::LoopNow &a, const watchdog::LoopNow &b) {
        return a.label < b.label || (a.label == b.label && a.blocked_ns > b.blocked_ns);
    });
    std::vector<LoopGauge> out;
    for (const watchdog::LoopNow &l : loops) {
        // One series per label: a thread running two loops has two labels
        // (loop_label.py); the same label twice means a stale slot, keep the longest.
        if (!out.empty() && l.label == out.back().label) continue;
        out.push_back({l.label, l.blocked, (double)l.blocked_ns / 1e9});
    }
    return out;
}

std::string blocked_now_metrics() {
    std::string out =
        "# HELP taskleak_event_loop_blocked_now 1 while the loop is blocked right now (an episode in progress), "
        "answered natively while it is stuck.\n"
        "# TYPE taskleak_event_loop_blocked_now gauge\n";
    std::string secs =
        "# HELP taskleak_event_loop_current_block_seconds Seconds the loop has been blocked so far in the "
        "episode in progress (0 when it is not blocked).\n"
        "# TYPE taskleak_event_loop_current_block_seconds gauge\n";
    for (const LoopGauge &l : loop_gauges()) {
        std::string lab = "{loop=\"" + prom_label(l.label) + "\"}";
        out += "taskleak_event_loop_blocked_now" + lab + (l.blocked ? " 1\n" : " 0\n");
        secs += "taskleak_event_loop_current_block_seconds" + lab + " " + num(l.seconds) + "\n";
    }
    return out + secs;
}

}  // namespace taskleak::live
