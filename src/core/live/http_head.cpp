// See http_head.hpp. Mirrors http_request.py's checks, conservatively.
#include "live/http_head.hpp"

#include <arpa/inet.h>
#include <cctype>
#include <cstring>

namespace taskleak::live {

namespace {

bool is_tchar(unsigned char c) { return std::isalnum(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr; }

bool is_token(const std::string &s) {
    if (s.empty()) return false;
    for (unsigned char c : s)
        if (c == 0 || !is_tchar(c)) return false;
    return true;
}

std::string strip(const std::string &s) {
    // Python's bytes.strip(): ASCII whitespace.
    size_t a = 0, b = s.size();
    while (a < b && std::strchr(" \t\n\r\x0b\x0c", s[a]) != nullptr && s[a] != 0) ++a;
    while (b > a && std::strchr(" \t\n\r\x0b\x0c", s[b - 1]) != nullptr && s[b - 1] != 0) --b;
    return s.substr(a, b - a);
}

int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// As urllib.parse.unquote_plus for ASCII input (invalid escapes stay as they are).
std::string unquote_plus(const std::string &s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out += (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out += c;
        }
    }
    return out;
}

std::vector<std::string> split(const std::string &s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    while (true) {
        size_t at = s.find(sep, start);
        out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
        if (at == std::string::npos) return out;
        start = at + 1;
    }
}

}  // namespace

size_t head_end(const std::string &buf) {
    size_t a = buf.find("\r\n\r\n");
    if (a == std::string::npos) a = buf.find("\n\n");
    return a;
}

const std::string *Head::header(const char *name) const {
    for (const auto &kv : headers)
        if (kv.first == name) return &kv.second;
    return nullptr;
}

std::string Head::param(const char *name) const {
    std::string v;
    for (const auto &kv : query)
        if (kv.first == name) v = kv.second;
    return v;
}

Head parse_head(const std::string &raw) {
    Head h;
    std::string head;
    head.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {  // "\r\n" -> "\n", as http_request.py
        if (raw[i] == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') continue;
        head += raw[i];
    }
    std::vector<std::string> lines = split(head, '\n');
    std::vector<std::string> parts = split(lines[0], ' ');
    if (parts.size() != 3) return h;
    const std::string &method = parts[0], &target = parts[1], &version = parts[2];
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return h;
    if (method != "GET" && method != "HEAD") return h;
    if (target.size() > MAX_TARGET_BYTES || target.empty() || target[0] != '/') return h;
    for (unsigned char c : target)
        if (c < 0x21 || c > 0x7e) return h;
    if (lines.size() - 1 > MAX_HEADERS) return h;
    for (size_t i = 1; i < lines.size(); ++i) {
        const std::string &line = lines[i];
        size_t colon = line.find(':');
        if (colon == std::string::npos) return h;
        std::string name = line.substr(0, colon);
        if (!is_token(name)) return h;
        std::string value = line.substr(colon + 1);
        for (unsigned char c : value)
            if ((c < 0x20 && c != 0x09) || c == 0x7f) return h;
        for (char &c : name) c = (char)std::tolower((unsigned char)c);
        if (name == "transfer-encoding") return h;
        if (name == "host" || name == "authorization" || name == "content-length")
            if (h.header(name.c_str()) != nullptr) return h;  // duplicate: Python refuses it
        value = strip(value);
        if (name == "content-length" && value != "0") return h;  // "00", bodies: Python decides
        bool replaced = false;
        for (auto &kv : h.headers)
            if (kv.first == name) {
                kv.second = value;  // a later duplicate wins, as in the dict of http_request.py
                replaced = true;
            }
        if (!replaced) h.headers.emplace_back(name, value);
    }
    // A fragment or a percent-escape in the path: Python's urlsplit/unquote decide.
    size_t q = target.find('?');
    std::string path = target.substr(0, q);
    if (path.find('%') != std::string::npos || target.find('#') != std::string::npos) return h;
    h.path = path;
    if (q != std::string::npos) {
        std::string qs = target.substr(q + 1);
        if (!qs.empty()) {
            std::vector<std::string> fields = split(qs, '&');
            if (fields.size() > MAX_QUERY_FIELDS) return h;
            for (const std::string &f : fields) {
                if (f.empty()) continue;
                size_t eq = f.find('=');
                if (eq == std::string::npos)  // keep_blank_values=True: a blank value
                    h.query.emplace_back(unquote_plus(f), "");
                else h.query.emplace_back(unquote_plus(f.substr(0, eq)), unquote_plus(f.substr(eq + 1)));
            }
        }
    }
    h.head_only = method == "HEAD";
    h.simple = true;
    return h;
}

int host_is_loopback(const std::string &value) {
    std::string v = strip(value);
    for (char &c : v) c = (char)std::tolower((unsigned char)c);
    std::string name;
    if (!v.empty() && v[0] == '[') {
        size_t close = v.find(']');
        if (close == std::string::npos) return -1;
        name = v.substr(1, close - 1);
    } else {
        size_t colons = 0;
        for (char c : v) colons += c == ':';
        name = colons == 1 ? v.substr(0, v.find(':')) : v;
    }
    if (name == "localhost") return 1;
    if (name.size() > 10 && name.compare(name.size() - 10, 10, ".localhost") == 0) return 1;
    // Dotted quads without leading zeros (ipaddress refuses those).
    std::vector<std::string> octets = split(name, '.');
    if (octets.size() == 4) {
        bool ok = true;
        int first = -1;
        for (const std::string &o : octets) {
            if (o.empty() || o.size() > 3 || (o.size() > 1 && o[0] == '0')) ok = false;
            for (char c : o)
                if (c < '0' || c > '9') ok = false;
            if (!ok) break;
            int val = std::stoi(o);
            if (val > 255) ok = false;
            if (first < 0) first = val;
        }
        if (ok) return first == 127 ? 1 : 0;
    }
    if (name == "::1") return 1;
    in6_addr a6;
    if (name.find('%') == std::string::npos && inet_pton(AF_INET6, name.c_str(), &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ? 1 : -1;  // (mapped IPv4 forms: Python decides)
    bool plain_name = !name.empty();
    for (char c : name)
        if (!(std::isalnum((unsigned char)c) || c == '-' || c == '.')) plain_name = false;
    // A DNS name that is not localhost: Python's ipaddress says "not an address", so not loopback.
    bool all_digits_dots = true;
    for (char c : name)
        if (!(std::isdigit((unsigned char)c) || c == '.')) all_digits_dots = false;
    return plain_name && !all_digits_dots ? 0 : -1;
}

}  // namespace taskleak::live
