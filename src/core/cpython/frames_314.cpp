// CPython 3.14: direct frame walk over the layout in stackref_frames.hpp.
// Owners: THREAD 0, GENERATOR 1, FRAME_OBJECT 2, INTERPRETER 3, CSTACK 4.
// gi_frame_state: CREATED -3, SUSPENDED -2, SUSPENDED_YIELD_FROM -1,
// EXECUTING 0, COMPLETED 1, CLEARED 4; finished means state >= COMPLETED.
#include <Python.h>

#if PY_VERSION_HEX < 0x030E0000 || PY_VERSION_HEX >= 0x030F0000
#error "frames_314.cpp mirrors CPython 3.14 only"
#endif

#include "cpython/stackref_frames.hpp"

namespace taskleak::cpython {
namespace {
struct States314 {
    static bool frame_alive(int8_t state) { return state < 1; }  // < FRAME_COMPLETED
    static bool suspended(int8_t state) { return state == -2 || state == -1; }
};
using Layout314 = StackrefLayout<States314>;
}  // namespace
}  // namespace taskleak::cpython

TASKLEAK_DEFINE_FRAME_API(Layout314)
