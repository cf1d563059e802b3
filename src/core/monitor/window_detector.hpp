// The leak detector: a pure function of the series it is fed, no Python in
// it (so it can be tested on synthetic series and reused for every signal).
//
// Two tests sit side by side, and one episode is open at a time:
//
// * spike  - the seed's rule: the value stays above mean + sigma * stddev of
//            the trailing window for `consecutive` samples. Made trustworthy
//            by a floor on the stddev (a flat line has stddev 0) and by a
//            minimum absolute and relative rise, so 50 -> 51 is quiet.
//            Samples of a run that breaks before `consecutive` go back into
//            the baseline, so recurring short bursts widen it.
// * trend  - what the spike rule cannot see (a straight-line rise sits at
//            ~1.8 sigma above the trailing mean for any slope): every
//            `window` samples close a block (its minimum = the block's
//            low-water mark, its median). It fires when the medians of the
//            trailing blocks rise significantly (Mann-Kendall; slope by
//            Theil-Sen), the low-water mark rose across the last three
//            blocks, and the newest low-water mark is above every low-water
//            mark seen earlier in the horizon by at least the minimum rise.
//            That last condition is what keeps cycles quiet once one period
//            is in the horizon: a daily rise never clears yesterday's floor.
//
// After an alert the episode stays open (no further alert) until the signal
// is level again; then the baseline is what the signal is now (re-baseline).
#pragma once
#include <cstdint>
#include <deque>
#include <vector>

namespace taskleak {

struct DetectorConfig {
    int window = 30;  // samples in the spike baseline and per trend block
    double sigma = 2.0;
    int consecutive = 3;
    double min_stddev = 1.0;       // floor on the baseline's stddev
    double min_rise = 5.0;         // absolute minimum rise over the baseline
    double min_rise_ratio = 0.05;  // ... and relative to the baseline's level
    double trend_z = 2.5;          // Mann-Kendall z a trend must reach
    int trend_blocks = 6;          // blocks of history before a trend can fire
    int horizon = 8640;            // samples of block history kept (a day at 10 s)
    int warmup = 10;               // baseline samples before the spike rule runs
};

enum class AnomalyKind : int { None = 0, Spike = 1, Trend = 2 };

struct Anomaly {
    AnomalyKind kind = AnomalyKind::None;
    double value = 0, mean = 0, stddev = 0, threshold = 0, slope_per_sample = 0;
    int samples = 0;  // samples the verdict rests on
};

class WindowDetector {
public:
    // Throws std::invalid_argument on a nonsensical configuration.
    explicit WindowDetector(const DetectorConfig &cfg);

    // Feed one sample; returns an Anomaly with kind != None when an episode
    // starts. NaN/inf samples are ignored (a failed read is not a zero).
    Anomaly update(double value);

    bool in_episode() const { return episode_ != AnomalyKind::None; }
    AnomalyKind episode_kind() const { return episode_; }
    uint64_t count() const { return n_; }
    uint64_t alerts() const { return alerts_; }
    const DetectorConfig &config() const { return cfg_; }
    void reset();

    // Exposed for tests of the statistics themselves.
    static double mann_kendall_z(const std::vector<double> &xs);
    static double theil_sen_slope(const std::vector<double> &xs);

private:
    struct Block {
        double low, median, sd;
    };
    double typical_stddev() const;
    void baseline_stats(double *mean, double *sd) const;
    double rise_needed(double level) const;
    Anomaly check_spike(double v);
    Anomaly check_trend(double v);
    void close_block();
    void maybe_end_episode();
    void push_baseline(double v);

    DetectorConfig cfg_;
    std::deque<double> base_;    // spike baseline (<= window)
    std::vector<double> run_;    // current above-threshold run
    std::deque<double> recent_;  // last `window` samples, always
    std::vector<double> block_;  // samples of the block being filled
    std::deque<Block> blocks_;   // closed blocks, oldest first (<= horizon/window)
    AnomalyKind episode_ = AnomalyKind::None;
    int episode_samples_ = 0;
    int episode_blocks_ = 0;  // blocks closed since the alert
    uint64_t n_ = 0, alerts_ = 0;
};

}  // namespace taskleak
