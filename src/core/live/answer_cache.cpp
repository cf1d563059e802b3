// See answer_cache.hpp. Readers take a reference under the lock and read
// outside it: a setter never waits for a slow client.
#include "live/answer_cache.hpp"

namespace taskleak::live {

void AnswerCache::set_metrics(std::string body) {
    auto p = std::make_shared<const std::string>(std::move(body));
    std::lock_guard<std::mutex> g(mu_);
    metrics_ = std::move(p);
}

void AnswerCache::set_info(std::string body) {
    auto p = std::make_shared<const std::string>(std::move(body));
    std::lock_guard<std::mutex> g(mu_);
    info_ = std::move(p);
}

void AnswerCache::set_blocked(BlockedParts parts) {
    auto p = std::make_shared<const BlockedParts>(std::move(parts));
    std::lock_guard<std::mutex> g(mu_);
    blocked_ = std::move(p);
}

std::shared_ptr<const std::string> AnswerCache::metrics() const {
    std::lock_guard<std::mutex> g(mu_);
    return metrics_;
}

std::shared_ptr<const std::string> AnswerCache::info() const {
    std::lock_guard<std::mutex> g(mu_);
    return info_;
}

std::shared_ptr<const BlockedParts> AnswerCache::blocked() const {
    std::lock_guard<std::mutex> g(mu_);
    return blocked_;
}

void AnswerCache::set_static(const std::string &path, StaticAnswer answer) {
    auto p = std::make_shared<const StaticAnswer>(std::move(answer));
    std::lock_guard<std::mutex> g(mu_);
    static_[path] = std::move(p);
}

std::shared_ptr<const StaticAnswer> AnswerCache::static_answer(const std::string &path) const {
    std::lock_guard<std::mutex> g(mu_);
    auto it = static_.find(path);
    return it == static_.end() ? nullptr : it->second;
}

}  // namespace taskleak::live
