// The version-neutral walker over RemoteOffsets (see remote_frames.hpp).
#include "cpython/remote_frames.hpp"
#include "cpython/safe_read.hpp"

#include <cstring>
#include <string>

namespace taskleak::cpython {
namespace {

RemoteOffsets g_off;
bool g_ready = false;
std::string g_mode = "unavailable";

constexpr uintptr_t STACKREF_TAG_BITS = 3;
constexpr int MAX_WALK = 1024;  // frames visited, skipped ones included: a torn chain may loop

// The largest offset we read inside a frame, to read each frame in one call.
int64_t frame_span(const RemoteOffsets &o) {
    int64_t m = o.f_previous;
    if (o.f_code > m) m = o.f_code;
    if (o.f_instr > m) m = o.f_instr;
    if (o.f_owner > m) m = o.f_owner;
    return m + 8;
}

int64_t code_span(const RemoteOffsets &o) {
    int64_t m = (int64_t)offsetof(PyObject, ob_type);
    if (o.co_filename > m) m = o.co_filename;
    if (o.co_firstlineno > m) m = o.co_firstlineno;
    return m + 8;
}

template <class T>
T field(const unsigned char *buf, int64_t off) {
    T v;
    std::memcpy(&v, buf + off, sizeof v);
    return v;
}

// Reads the code header at `code`; true if it is a code object.
bool read_code(uintptr_t code, uintptr_t *filename, int32_t *firstlineno, int64_t *size_units) {
    unsigned char buf[512];
    int64_t span = code_span(g_off);
    if (span > (int64_t)sizeof buf || (code & 7) != 0) return false;
    if (!safe_read(code, buf, (size_t)span)) return false;
    if (field<uintptr_t>(buf, offsetof(PyObject, ob_type)) != (uintptr_t)&PyCode_Type) return false;
    *filename = field<uintptr_t>(buf, g_off.co_filename);
    *firstlineno = field<int32_t>(buf, g_off.co_firstlineno);
    if (size_units != nullptr) {
        // ob_size of a code object counts its code units (PyVarObject).
        Py_ssize_t n = 0;
        if (!safe_read_value(code + offsetof(PyVarObject, ob_size), &n)) return false;
        *size_units = n;
    }
    return *filename != 0;
}

}  // namespace

bool remote_frames_init() {
    if (g_ready) return true;
    g_off = remote_offsets();
    const char *how = safe_read_mode();
    if (g_off.source == nullptr || std::strcmp(how, "unavailable") == 0 || frame_span(g_off) > 256 ||
        code_span(g_off) > 512) {
        g_mode = "unavailable";
        return false;
    }
    g_mode = std::string(g_off.source) + " via " + how;
    g_ready = true;
    return true;
}

const char *remote_frames_mode() { return g_mode.c_str(); }

int read_remote_stack(uintptr_t tstate, RemoteFrame *out, int max_depth) {
    if (!g_ready || tstate == 0) return 0;
    const RemoteOffsets &o = g_off;
    uintptr_t frame = 0;
    if (!safe_read_value(tstate + o.ts_frame, &frame)) return 0;
    if (o.cframe_current >= 0) {
        uintptr_t cframe = frame;
        if (cframe == 0 || !safe_read_value(cframe + o.cframe_current, &frame)) return 0;
    }
    unsigned char buf[256];
    const size_t span = (size_t)frame_span(o);
    int n = 0;
    for (int visited = 0; frame != 0 && n < max_depth && visited < MAX_WALK; ++visited) {
        if ((frame & 7) != 0 || !safe_read(frame, buf, span)) break;
        uintptr_t next = field<uintptr_t>(buf, o.f_previous);
        uintptr_t code = field<uintptr_t>(buf, o.f_code);
        if (o.code_tagged) code &= ~STACKREF_TAG_BITS;
        bool skip = o.f_owner >= 0 && o.owner_skip_min > 0 && (int)field<char>(buf, o.f_owner) >= o.owner_skip_min;
        if (!skip && code != 0) {
            RemoteFrame &rf = out[n];
            int64_t units = 0;
            if (read_code(code, &rf.filename, &rf.firstlineno, o.lasti_index ? nullptr : &units)) {
                int64_t off;
                if (o.lasti_index) {
                    int lasti = field<int>(buf, o.f_instr);
                    off = lasti < 0 ? 0 : (int64_t)lasti * 2;
                } else {
                    uintptr_t instr = field<uintptr_t>(buf, o.f_instr);
                    off = (int64_t)instr - (int64_t)(code + o.co_adaptive);
                }
                // A torn read can put the instruction anywhere: clamp to the
                // code (3.11+ count code units in ob_size; 3.10's code object
                // is not variable-sized, and Addr2Line bounds-checks there).
                if (off < 0 || (!o.lasti_index && off > units * 2)) off = 0;
                rf.code = code;
                rf.offset = (int32_t)off;
                ++n;
            }
        }
        if (next == frame) break;
        frame = next;
    }
    return n;
}

namespace {

constexpr size_t MAX_STRING = 4096;      // characters of a filename or qualname
constexpr size_t MAX_LINETABLE = 16384;  // bigger tables (huge functions): line unknown

void put_utf8(std::string &out, uint32_t c) {
    if (c < 0x80) {
        out += (char)c;
    } else if (c < 0x800) {
        out += (char)(0xC0 | (c >> 6));
        out += (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out += (char)(0xE0 | (c >> 12));
        out += (char)(0x80 | ((c >> 6) & 0x3F));
        out += (char)(0x80 | (c & 0x3F));
    } else {
        out += (char)(0xF0 | (c >> 18));
        out += (char)(0x80 | ((c >> 12) & 0x3F));
        out += (char)(0x80 | ((c >> 6) & 0x3F));
        out += (char)(0x80 | (c & 0x3F));
    }
}

// A compact str object (every code object's names are) as UTF-8. The public
// PyASCIIObject / PyCompactUnicodeObject structs of this build say where the
// characters are.
bool read_unicode(uintptr_t p, std::string *out) {
    PyCompactUnicodeObject u;
    if ((p & 7) != 0 || !safe_read(p, &u, sizeof u)) return false;
    const PyASCIIObject &a = u._base;
    if ((uintptr_t)a.ob_base.ob_type != (uintptr_t)&PyUnicode_Type) return false;
    if (!a.state.compact || a.length < 0 || (size_t)a.length > MAX_STRING) return false;
    unsigned kind = a.state.kind;
    if (kind != 1 && kind != 2 && kind != 4) return false;
    uintptr_t data = p + (a.state.ascii ? sizeof(PyASCIIObject) : sizeof(PyCompactUnicodeObject));
    size_t n = (size_t)a.length;
    unsigned char raw[MAX_STRING * 4];
    if (!safe_read(data, raw, n * kind)) return false;
    out->clear();
    for (size_t i = 0; i < n; ++i) {
        uint32_t c;
        if (kind == 1) c = raw[i];
        else if (kind == 2) {
            uint16_t v;
            std::memcpy(&v, raw + 2 * i, 2);
            c = v;
        } else {
            std::memcpy(&c, raw + 4 * i, 4);
            if (c > 0x10FFFF) return false;
        }
        put_utf8(*out, c);
    }
    return true;
}

bool read_bytes(uintptr_t p, std::string *out) {
    unsigned char head[sizeof(PyBytesObject)];
    if ((p & 7) != 0 || !safe_read(p, head, sizeof head)) return false;
    uintptr_t type;
    Py_ssize_t size;
    std::memcpy(&type, head + offsetof(PyObject, ob_type), sizeof type);
    std::memcpy(&size, head + offsetof(PyVarObject, ob_size), sizeof size);
    if (type != (uintptr_t)&PyBytes_Type || size < 0 || (size_t)size > MAX_LINETABLE) return false;
    out->resize((size_t)size);
    return size == 0 || safe_read(p + offsetof(PyBytesObject, ob_sval), &(*out)[0], (size_t)size);
}

int read_varint(const unsigned char *&p, const unsigned char *end) {
    if (p >= end) return 0;
    unsigned b = *p++;
    unsigned val = b & 63;
    unsigned shift = 0;
    while ((b & 64) && p < end && shift < 30) {
        b = *p++;
        shift += 6;
        val |= (b & 63) << shift;
    }
    return (int)val;
}

int read_svarint(const unsigned char *&p, const unsigned char *end) {
    unsigned u = (unsigned)read_varint(p, end);
    return (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
}

// 3.11+: entries of (code units covered, line delta, columns), see
// Objects/locations.md. Only the line is decoded.
int line_from_locations(const std::string &table, int firstlineno, int32_t offset) {
    const unsigned char *p = (const unsigned char *)table.data(), *end = p + table.size();
    int target = offset / 2;  // code units
    int line = firstlineno, addr = 0;
    while (p < end) {
        unsigned first = *p++;
        if (!(first & 0x80)) return -1;  // not an entry start: corrupt
        int code = (first >> 3) & 15, len = (first & 7) + 1;
        bool none = false;
        if (code == 15) {
            none = true;
        } else if (code == 14) {
            line += read_svarint(p, end);
            read_varint(p, end);
            read_varint(p, end);
            read_varint(p, end);
        } else if (code == 13) {
            line += read_svarint(p, end);
        } else if (code >= 10) {
            line += code - 10;
            p += 2;
        } else {
            p += 1;
        }
        if (target < addr + len) return none ? -1 : line;
        addr += len;
    }
    return -1;
}

// 3.10: (byte delta, signed line delta) pairs; -128 means "no line".
int line_from_pairs(const std::string &table, int firstlineno, int32_t offset) {
    const unsigned char *p = (const unsigned char *)table.data();
    size_t n = table.size() / 2;
    int line = firstlineno, ar_line = -1, end = 0;
    for (size_t i = 0; i < n; ++i) {
        int start = end;
        end += p[2 * i];
        int ldelta = (signed char)p[2 * i + 1];
        if (ldelta == -128) {
            ar_line = -1;
        } else {
            line += ldelta;
            ar_line = line;
        }
        if (offset >= start && offset < end) return ar_line;
    }
    return -1;
}

}  // namespace

bool read_code_info(const RemoteFrame &f, CodeInfo *out) {
    if (!g_ready || f.code == 0) return false;
    uintptr_t filename = 0;
    int32_t firstlineno = 0;
    if (!read_code(f.code, &filename, &firstlineno, nullptr)) return false;
    if (filename != f.filename || firstlineno != f.firstlineno) return false;
    const RemoteOffsets &o = g_off;
    uintptr_t qualname = 0, linetable = 0;
    int32_t flags = 0;
    if (!safe_read_value(f.code + o.co_qualname, &qualname) || !safe_read_value(f.code + o.co_linetable, &linetable) ||
        !safe_read_value(f.code + o.co_flags, &flags))
        return false;
    out->code = f.code;
    out->filename_ptr = filename;
    out->firstlineno = firstlineno;
    out->flags = flags;
    out->format = o.linetable_format;
    if (!read_unicode(filename, &out->filename)) return false;
    if (!read_unicode(qualname, &out->qualname)) out->qualname = "?";
    if (!read_bytes(linetable, &out->linetable)) out->linetable.clear();
    return true;
}

int code_info_line(const CodeInfo &info, int32_t offset) {
    if (info.linetable.empty()) return info.firstlineno;
    if (info.format == LINETABLE_310) return line_from_pairs(info.linetable, info.firstlineno, offset);
    return line_from_locations(info.linetable, info.firstlineno, offset);
}

}  // namespace taskleak::cpython
