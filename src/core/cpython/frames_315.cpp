// CPython 3.15: direct frame walk over the layout in stackref_frames.hpp
// (same structs as 3.14). What changed since 3.14:
//  - owners: THREAD 0, GENERATOR 1, FRAME_OBJECT 2, INTERPRETER 3 (CSTACK is
//    gone; the thread's base frame is INTERPRETER-owned);
//  - gi_frame_state renumbered: CREATED 0, SUSPENDED 1, SUSPENDED_YIELD_FROM 2,
//    SUSPENDED_YIELD_FROM_LOCKED 3, EXECUTING 4, CLEARED 5; there is no
//    COMPLETED any more and FRAME_STATE_FINISHED(S) is S == CLEARED;
//  - _PyStackRef gains Py_TAG_INVALID 2, only for PyStackRef_Wrap'ed
//    non-objects in debug builds, never in frames the GC sees.
#include <Python.h>

#if PY_VERSION_HEX < 0x030F0000 || PY_VERSION_HEX >= 0x03100000
#error "frames_315.cpp mirrors CPython 3.15 only"
#endif

#include "cpython/stackref_frames.hpp"

namespace taskleak::cpython {
namespace {
struct States315 {
    // Only CLEARED (5) is finished; also reject anything outside the enum.
    static bool frame_alive(int8_t state) { return state >= 0 && state < 5; }
    // SUSPENDED and SUSPENDED_YIELD_FROM; not _LOCKED, a generator another
    // thread is entering.
    static bool suspended(int8_t state) { return state == 1 || state == 2; }
};
using Layout315 = StackrefLayout<States315>;
}  // namespace
}  // namespace taskleak::cpython

TASKLEAK_DEFINE_FRAME_API(Layout315)
