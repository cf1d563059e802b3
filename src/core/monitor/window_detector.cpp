#include "monitor/window_detector.hpp"
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace taskleak {

static void require(bool ok, const std::string &what) {
    if (!ok) throw std::invalid_argument(what);
}

WindowDetector::WindowDetector(const DetectorConfig &cfg) : cfg_(cfg) {
    require(cfg.window >= 3, "window must be at least 3 samples");
    require(cfg.consecutive >= 1 && cfg.consecutive <= cfg.window, "consecutive must be between 1 and window");
    require(std::isfinite(cfg.sigma) && cfg.sigma > 0, "sigma must be a positive number");
    require(std::isfinite(cfg.min_stddev) && cfg.min_stddev >= 0, "min_stddev must be >= 0");
    require(std::isfinite(cfg.min_rise) && cfg.min_rise >= 0, "min_rise must be >= 0");
    require(std::isfinite(cfg.min_rise_ratio) && cfg.min_rise_ratio >= 0, "min_rise_ratio must be >= 0");
    require(std::isfinite(cfg.trend_z) && cfg.trend_z > 0, "trend_z must be a positive number");
    require(cfg.trend_blocks >= 3, "trend_blocks must be at least 3");
    require(cfg.horizon >= cfg.window * cfg.trend_blocks, "horizon must hold at least trend_blocks windows");
    require(cfg.warmup >= 2 && cfg.warmup <= cfg.window, "warmup must be between 2 and window");
}

void WindowDetector::reset() {
    base_.clear();
    run_.clear();
    recent_.clear();
    block_.clear();
    blocks_.clear();
    episode_ = AnomalyKind::None;
    episode_samples_ = 0;
    episode_blocks_ = 0;
    n_ = 0;
}

double WindowDetector::mann_kendall_z(const std::vector<double> &xs) {
    const size_t n = xs.size();
    if (n < 3) return 0.0;
    long long s = 0;
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j) s += (xs[j] > xs[i]) - (xs[j] < xs[i]);
    // Variance with the correction for ties: task counts are integers, and
    // a flat stretch is all ties.
    double var = (double)n * (n - 1) * (2.0 * n + 5) / 18.0;
    std::vector<double> sorted(xs);
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && sorted[j] == sorted[i]) ++j;
        double t = (double)(j - i);
        if (t > 1) var -= t * (t - 1) * (2 * t + 5) / 18.0;
        i = j;
    }
    if (var <= 0) return 0.0;
    if (s > 0) return (s - 1) / std::sqrt(var);
    if (s < 0) return (s + 1) / std::sqrt(var);
    return 0.0;
}

double WindowDetector::theil_sen_slope(const std::vector<double> &xs) {
    const size_t n = xs.size();
    if (n < 2) return 0.0;
    std::vector<double> slopes;
    slopes.reserve(n * (n - 1) / 2);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j) slopes.push_back((xs[j] - xs[i]) / (double)(j - i));
    size_t mid = slopes.size() / 2;
    std::nth_element(slopes.begin(), slopes.begin() + (long)mid, slopes.end());
    double m = slopes[mid];
    if (slopes.size() % 2 == 0) {
        double lo = *std::max_element(slopes.begin(), slopes.begin() + (long)mid);
        m = (m + lo) / 2;
    }
    return m;
}

void WindowDetector::baseline_stats(double *mean, double *sd) const {
    double sum = 0;
    for (double x : base_) sum += x;
    double m = base_.empty() ? 0 : sum / (double)base_.size();
    double ss = 0;
    for (double x : base_) ss += (x - m) * (x - m);
    *mean = m;
    *sd = base_.size() > 1 ? std::sqrt(ss / (double)(base_.size() - 1)) : 0.0;
}

double WindowDetector::typical_stddev() const {
    if (blocks_.empty()) return 0.0;
    std::vector<double> sds;
    sds.reserve(blocks_.size());
    for (const Block &b : blocks_) sds.push_back(b.sd);
    size_t mid = sds.size() / 2;
    std::nth_element(sds.begin(), sds.begin() + (long)mid, sds.end());
    return sds[mid];
}

double WindowDetector::rise_needed(double level) const {
    return std::max(cfg_.min_rise, cfg_.min_rise_ratio * std::fabs(level));
}

void WindowDetector::push_baseline(double v) {
    base_.push_back(v);
    while ((int)base_.size() > cfg_.window) base_.pop_front();
}

void WindowDetector::close_block() {
    std::vector<double> b(block_);
    block_.clear();
    double low = *std::min_element(b.begin(), b.end());
    double sum = 0, ss = 0;
    for (double x : b) sum += x;
    double mean = sum / (double)b.size();
    for (double x : b) ss += (x - mean) * (x - mean);
    double sd = std::sqrt(ss / (double)(b.size() - 1));
    size_t mid = b.size() / 2;
    std::nth_element(b.begin(), b.begin() + (long)mid, b.end());
    blocks_.push_back(Block{low, b[mid], sd});
    size_t keep = (size_t)std::max(cfg_.trend_blocks * 2, cfg_.horizon / cfg_.window);
    while (blocks_.size() > keep) blocks_.pop_front();
}

static bool lows_rising(const std::deque<double> &lows) {
    size_t m = lows.size();
    return m >= 3 && lows[m - 1] > lows[m - 2] && lows[m - 2] > lows[m - 3];
}

Anomaly WindowDetector::check_spike(double v) {
    if ((int)base_.size() < cfg_.warmup) {
        push_baseline(v);
        return {};
    }
    double mean, sd;
    baseline_stats(&mean, &sd);
    // The stddev of 30 samples is itself noisy; when it comes out low, a
    // plain "mean + 2 sigma" alerts on jitter (about five times a week at
    // 10 s on a steady Gaussian series). The usual jitter of the series -
    // the median stddev of the blocks in the horizon - floors it.
    double typical = typical_stddev();
    double thr = std::max(mean + cfg_.sigma * std::max({sd, cfg_.min_stddev, typical}), mean + rise_needed(mean));
    if (v > thr) {
        run_.push_back(v);
        if ((int)run_.size() < cfg_.consecutive) return {};
        Anomaly a;
        a.kind = AnomalyKind::Spike;
        a.value = v;
        a.mean = mean;
        a.stddev = sd;
        a.threshold = thr;
        a.samples = (int)(base_.size() + run_.size());
        a.slope_per_sample = theil_sen_slope(std::vector<double>(recent_.begin(), recent_.end()));
        // Re-baseline on the new level: the episode judges from here.
        base_.assign(run_.begin(), run_.end());
        run_.clear();
        return a;
    }
    // A run that broke early was a burst: it belongs to the baseline.
    for (double r : run_) push_baseline(r);
    run_.clear();
    push_baseline(v);
    return {};
}

Anomaly WindowDetector::check_trend(double v) {
    const size_t m = blocks_.size();
    const size_t tb = (size_t)cfg_.trend_blocks;
    if (m < tb) return {};
    std::deque<double> lows;
    for (const Block &b : blocks_) lows.push_back(b.low);
    if (!lows_rising(lows)) return {};
    // Still rising now, not only over a longer stretch that includes an
    // earlier rise (the way down from a daily peak).
    {
        std::vector<double> last;
        for (size_t i = m - tb; i < m; ++i) last.push_back(blocks_[i].median);
        if (theil_sen_slope(last) <= 0) return {};
    }
    // The shortest trailing stretch of blocks whose medians rise
    // significantly; at most half the history, so there is an earlier part
    // to compare the floor with.
    size_t max_len = std::max(tb, m / 2);
    std::vector<size_t> lens;
    for (size_t L = tb; L <= max_len; L *= 2) lens.push_back(L);
    if (lens.back() != max_len) lens.push_back(max_len);
    for (size_t L : lens) {
        std::vector<double> med;
        for (size_t i = m - L; i < m; ++i) med.push_back(blocks_[i].median);
        double z = mann_kendall_z(med);
        if (z < cfg_.trend_z) continue;
        double slope = theil_sen_slope(med);
        if (slope <= 0) continue;
        // The floor to beat: the highest low-water mark before the stretch.
        double ref = lows[0];
        for (size_t i = 1; i + L < m; ++i) ref = std::max(ref, lows[i]);
        double need = rise_needed(ref);
        if (lows[m - 1] - ref < need) continue;
        Anomaly a;
        a.kind = AnomalyKind::Trend;
        a.value = v;
        baseline_stats(&a.mean, &a.stddev);
        a.threshold = ref + need;
        a.slope_per_sample = slope / (double)cfg_.window;
        a.samples = (int)(L * (size_t)cfg_.window);
        return a;
    }
    return {};
}

void WindowDetector::maybe_end_episode() {
    if (episode_ == AnomalyKind::Spike) {
        // Level again: a full window since the alert, no significant rise in
        // it, and the low-water mark no longer climbing.
        if (episode_samples_ < cfg_.window) return;
        if (mann_kendall_z(std::vector<double>(recent_.begin(), recent_.end())) >= 1.0) return;
        std::deque<double> lows;
        for (const Block &b : blocks_) lows.push_back(b.low);
        if (lows_rising(lows)) return;
        episode_ = AnomalyKind::None;
    } else if (episode_ == AnomalyKind::Trend) {
        // Over when the medians of the last 2 * trend_blocks blocks no
        // longer rise: a leak that goes on,
        // however noisy, is one episode; a plateau or a fall ends it.
        if (episode_blocks_ < 2 * cfg_.trend_blocks) return;
        size_t L = std::min((size_t)(2 * cfg_.trend_blocks), blocks_.size());
        std::vector<double> med;
        for (size_t i = blocks_.size() - L; i < blocks_.size(); ++i) med.push_back(blocks_[i].median);
        if (mann_kendall_z(med) >= 1.0) return;
        episode_ = AnomalyKind::None;
    }
    if (episode_ == AnomalyKind::None) {
        run_.clear();
        base_.assign(recent_.begin(), recent_.end());
    }
}

Anomaly WindowDetector::update(double v) {
    if (!std::isfinite(v)) return {};
    ++n_;
    recent_.push_back(v);
    while ((int)recent_.size() > cfg_.window) recent_.pop_front();
    block_.push_back(v);
    bool closed = false;
    if ((int)block_.size() >= cfg_.window) {
        close_block();
        closed = true;
    }
    if (episode_ != AnomalyKind::None) {
        ++episode_samples_;
        if (closed) ++episode_blocks_;
        if (closed || episode_ == AnomalyKind::Spike) maybe_end_episode();
        return {};
    }
    Anomaly a = check_spike(v);
    if (a.kind == AnomalyKind::None && closed) a = check_trend(v);
    if (a.kind != AnomalyKind::None) {
        episode_ = a.kind;
        episode_samples_ = 0;
        episode_blocks_ = 0;
        ++alerts_;
    }
    return a;
}

}  // namespace taskleak
