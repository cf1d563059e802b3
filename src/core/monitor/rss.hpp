// The process's resident set size, read natively (no psutil) and without
// the GIL: the sampler reads it before it takes the GIL.
#pragma once
#include <cstdint>

namespace taskleak {

// Bytes, or -1 where the platform gives no cheap way to read it.
int64_t current_rss_bytes();

}  // namespace taskleak
