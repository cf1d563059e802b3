// Reading a request head natively: the few requests the native path answers
// itself (GET/HEAD of /metrics, /api/blocked, /api/info) must pass the same
// checks as http_request.py. Anything this parser does not fully understand
// is not refused here: it goes to Python, which gives the precise 4xx (or,
// while the GIL does not come, the native path's 503).
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace taskleak::live {

constexpr size_t MAX_HEAD_BYTES = 8192;  // as http_request.py
constexpr size_t MAX_TARGET_BYTES = 2048;
constexpr size_t MAX_HEADERS = 64;
constexpr size_t MAX_QUERY_FIELDS = 32;

// Where the head ends in `buf` (the index of the blank line), or npos.
size_t head_end(const std::string &buf);

struct Head {
    bool simple = false;  // well-formed and plain: the native path may answer it
    bool head_only = false;
    std::string path;                                          // not percent-decoded (simple: none to decode)
    std::vector<std::pair<std::string, std::string>> query;    // decoded, in order
    std::vector<std::pair<std::string, std::string>> headers;  // lower-case names, stripped values
    const std::string *header(const char *name) const;
    std::string param(const char *name) const;  // the last value, "" if absent
};

Head parse_head(const std::string &head);

// Is a Host header a loopback name? 1 yes, 0 no, -1 not sure (let Python decide).
int host_is_loopback(const std::string &value);

}  // namespace taskleak::live
