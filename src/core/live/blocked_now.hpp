// Episodes in progress, rendered without the GIL: what a loop stuck right
// now is doing (its duration so far, the stacks sampled so far, the line),
// as JSON for /api/blocked, one line of text for 503 answers and `taskleak
// top`, and Prometheus gauges for /metrics. Everything comes from copies the
// watchdog hands out (watchdog.hpp); nothing here touches a Python object.
#pragma once
#include <string>
#include <vector>

namespace taskleak::live {

// Where library code lives (the stdlib directory, "/site-packages/"
// markers), as frame.py decides it: the line an episode names is the
// innermost frame outside them. Set once from Python (with the GIL).
void set_library_paths(const std::vector<std::string> &prefixes, const std::vector<std::string> &markers,
                       const std::string &cwd);

struct NowFrame {
    std::string filename;  // empty: unreadable
    std::string function;
    int line = 0;
};

struct NowStack {
    unsigned count = 0;
    std::vector<NowFrame> frames;  // innermost first
};

struct NowEpisode {
    std::string loop;
    std::string thread;
    unsigned long long seq = 0;
    double duration = 0;  // so far
    double threshold = 0;
    double start_wall = 0;  // time.time() of its start
    unsigned samples = 0;
    std::vector<NowStack> stacks;  // most frequent first
    int site = -1;                 // index in stacks[0].frames of the line that blocked
    std::string callee;            // the library call it is inside ("re.match"), or ""
};

std::vector<NowEpisode> blocked_now();

// `[{...}, ...]`: the episodes in progress, in /api/blocked's episode shape.
std::string blocked_now_json(const std::vector<NowEpisode> &eps);
// "MainThread blocked for 8.2 s at app.py:41 in handler (re.match)", or "".
std::string blocked_now_text(const std::vector<NowEpisode> &eps);
// Each watched loop's stable label, whether it is blocked now and for how
// long so far: one per label, sorted by label.
struct LoopGauge {
    std::string label;
    bool blocked = false;
    double seconds = 0;
};
std::vector<LoopGauge> loop_gauges();

// The live gauges, per watched loop's stable label (of loop_gauges()), in
// the Prometheus text format; metrics.py's live families say the same.
std::string blocked_now_metrics();

// JSON string literal (quotes included) of UTF-8 `s`.
std::string json_string(const std::string &s);

}  // namespace taskleak::live
