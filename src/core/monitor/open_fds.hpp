// How many file descriptors the process has open, and how many of them are
// TCP sockets whose peer has closed its side, read natively and without the
// GIL (the sampler reads them beside the RSS). The stale-task rule uses them
// to tell connections from leaks: tasks that pile up one per new open
// socket are connections being kept, not tasks nobody will finish; a socket
// whose peer is gone keeps nobody's connection.
#pragma once
#include <cstdint>

namespace taskleak {

struct OpenFds {
    int64_t open = -1;         // -1 where the platform gives no way to list them
    int64_t peer_closed = -1;  // TCP sockets in CLOSE_WAIT; -1 if unknown
};

OpenFds current_open_fds();

}  // namespace taskleak
