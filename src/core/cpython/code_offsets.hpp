// 3.11+: where PyCodeObject keeps what a remote stack read needs. Taken from
// the public struct of the headers this file is compiled against; each build
// compiles exactly one remote_frames_3XX.cpp, for the interpreter it targets,
// so the headers and the running interpreter always agree.
#pragma once
#include "cpython/remote_frames.hpp"
#include <cstddef>

namespace taskleak::cpython {

inline void code_offsets_from_headers(RemoteOffsets &o) {
    o.co_filename = offsetof(PyCodeObject, co_filename);
    o.co_firstlineno = offsetof(PyCodeObject, co_firstlineno);
    o.co_adaptive = offsetof(PyCodeObject, co_code_adaptive);
    o.co_qualname = offsetof(PyCodeObject, co_qualname);
    o.co_linetable = offsetof(PyCodeObject, co_linetable);
    o.co_flags = offsetof(PyCodeObject, co_flags);
    o.linetable_format = LINETABLE_LOCATIONS;
}

}  // namespace taskleak::cpython
