// CPython 3.10: frames are PyFrameObjects (public struct, cpython/frameobject.h)
// hanging off tstate->frame; f_lasti counts code units.
#include "cpython/remote_frames.hpp"
#include <frameobject.h>
#include <cstddef>

namespace taskleak::cpython {
RemoteOffsets remote_offsets() {
    RemoteOffsets o{};
    o.source = "compiled";
    o.ts_frame = offsetof(PyThreadState, frame);
    o.cframe_current = -1;
    o.f_previous = offsetof(PyFrameObject, f_back);
    o.f_code = offsetof(PyFrameObject, f_code);
    o.f_instr = offsetof(PyFrameObject, f_lasti);
    o.f_owner = -1;
    o.owner_skip_min = 0;
    o.code_tagged = false;
    o.lasti_index = true;
    o.co_filename = offsetof(PyCodeObject, co_filename);
    o.co_firstlineno = offsetof(PyCodeObject, co_firstlineno);
    o.co_adaptive = -1;
    o.co_qualname = offsetof(PyCodeObject, co_name);
    o.co_linetable = offsetof(PyCodeObject, co_linetable);
    o.co_flags = offsetof(PyCodeObject, co_flags);
    o.linetable_format = LINETABLE_310;
    return o;
}
}  // namespace taskleak::cpython
