// CPython 3.12: tstate->cframe->current_frame, then the _PyInterpreterFrame
// fields mirrored in frames_312.cpp (f_code first, previous second,
// prev_instr at 56, owner 70); owner 3 (C stack) marks shim frames.
#include "cpython/code_offsets.hpp"
#include <cstddef>

namespace taskleak::cpython {
RemoteOffsets remote_offsets() {
    RemoteOffsets o{};
    o.source = "compiled";
    o.ts_frame = offsetof(PyThreadState, cframe);
    o.cframe_current = offsetof(_PyCFrame, current_frame);
    o.f_previous = sizeof(void *);
    o.f_code = 0;
    o.f_instr = 7 * sizeof(void *);
    o.f_owner = 8 * sizeof(void *) + sizeof(int) + sizeof(uint16_t);
    o.owner_skip_min = 3;
    o.code_tagged = false;
    o.lasti_index = false;
    code_offsets_from_headers(o);
    return o;
}
}  // namespace taskleak::cpython
