// The answers Python renders ahead of time for the native path: the
// latest sample's /metrics families, /api/info, /api/blocked's recorded
// part (its head fields and each recorded episode, newest first), and the
// dashboard's static files (its page and assets, registered once). Python
// replaces them (after each monitor sample, when an episode is recorded);
// the listener thread reads them without the GIL.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace taskleak::live {

struct BlockedParts {
    std::string head;                   // `"watching": ..., "blocks": ..., ...` (JSON members, no braces)
    std::vector<std::string> episodes;  // each a JSON object, newest first
    // The watchdog's state it was rendered from: newer episodes or another
    // watching state make it stale (then Python is asked first).
    uint64_t blocks = 0;
    bool running = false;
    double threshold = 0;
};

// A file served as it is, whatever the query: the dashboard's page and
// assets, so that a dashboard opened while the loop is stuck still loads.
struct StaticAnswer {
    std::string content_type;
    std::string body;
    bool public_file = false;  // served without the token (the page's own script and style)
};

class AnswerCache {
public:
    void set_metrics(std::string body);
    void set_info(std::string body);
    void set_blocked(BlockedParts parts);
    std::shared_ptr<const std::string> metrics() const;
    std::shared_ptr<const std::string> info() const;
    std::shared_ptr<const BlockedParts> blocked() const;
    void set_static(const std::string &path, StaticAnswer answer);
    std::shared_ptr<const StaticAnswer> static_answer(const std::string &path) const;  // nullptr: none

private:
    mutable std::mutex mu_;
    std::shared_ptr<const std::string> metrics_ = std::make_shared<std::string>();
    std::shared_ptr<const std::string> info_ = std::make_shared<std::string>("{}");
    std::shared_ptr<const BlockedParts> blocked_ = std::make_shared<BlockedParts>();
    std::map<std::string, std::shared_ptr<const StaticAnswer>> static_;
};

}  // namespace taskleak::live
