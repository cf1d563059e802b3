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
        bool skip = o.f_owner >= 0 && o.owner_skip_min > 0 &&
                    (int)field<char>(buf, o.f_owner) >= o.owner_skip_min;
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

PyCodeObject *revalidate_code(const RemoteFrame &f) {
    if (!g_ready || f.code == 0) return nullptr;
    uintptr_t filename = 0;
    int32_t firstlineno = 0;
    if (!read_code(f.code, &filename, &firstlineno, nullptr)) return nullptr;
    if (filename != f.filename || firstlineno != f.firstlineno) return nullptr;
    // A freed block's first word is an allocator free-list pointer (or 0):
    // a live object's refcount is small, or the immortal value.
    // Heap pointers have bits 32-47 set; 3.14 keeps object flags in bits
    // 48-63 of the same word, so those are not looked at.
    uint64_t refcnt = 0;
    if (!safe_read_value(f.code, &refcnt)) return nullptr;
    if ((refcnt & 0xFFFFFFFFu) == 0 || ((refcnt >> 32) & 0xFFFFu) != 0) return nullptr;
    uintptr_t fn_type = 0;
    if (!safe_read_value(filename + offsetof(PyObject, ob_type), &fn_type) || fn_type != (uintptr_t)&PyUnicode_Type)
        return nullptr;
    return (PyCodeObject *)f.code;
}

}  // namespace taskleak::cpython
