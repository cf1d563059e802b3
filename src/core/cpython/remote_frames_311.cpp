// CPython 3.11: tstate->cframe->current_frame, then the _PyInterpreterFrame
// fields mirrored in frames_311.cpp (f_code at 32, previous at 48,
// prev_instr at 56, owner at 69).
#include "cpython/code_offsets.hpp"
#include <cstddef>

namespace taskleak::cpython {
RemoteOffsets remote_offsets() {
    RemoteOffsets o{};
    o.source = "compiled";
    o.ts_frame = offsetof(PyThreadState, cframe);
    o.cframe_current = offsetof(_PyCFrame, current_frame);
    o.f_previous = 6 * sizeof(void *);
    o.f_code = 4 * sizeof(void *);
    o.f_instr = 7 * sizeof(void *);
    o.f_owner = 8 * sizeof(void *) + sizeof(int) + 1;  // after stacktop (int) and is_entry (bool)
    o.owner_skip_min = 0;                              // 3.11 has no shim frames
    o.code_tagged = false;
    o.lasti_index = false;
    code_offsets_from_headers(o);
    return o;
}
}  // namespace taskleak::cpython
