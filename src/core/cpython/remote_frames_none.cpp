// CPython versions without a known layout (and free-threaded builds): no
// remote stacks. The watchdog still measures and reports blocked durations.
#include "cpython/remote_frames.hpp"

namespace taskleak::cpython {
RemoteOffsets remote_offsets() {
    RemoteOffsets o{};
    o.source = nullptr;
    return o;
}
}  // namespace taskleak::cpython
