// How many file descriptors the process has open, read natively and without
// the GIL (the sampler reads it beside the RSS). The stale-task rule uses it
// to tell connections from leaks: tasks that pile up one per new open
// socket are connections being kept, not tasks nobody will finish.
#pragma once
#include <cstdint>

namespace taskleak {

// A count, or -1 where the platform gives no way to list them.
int64_t current_open_fds();

}  // namespace taskleak
