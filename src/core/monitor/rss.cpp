#include "monitor/rss.hpp"
#include <cstdio>
#if defined(__linux__)
#include <unistd.h>
#elif defined(__APPLE__)
#include <mach/mach.h>
#endif

namespace taskleak {

int64_t current_rss_bytes() {
#if defined(__linux__)
    // /proc/self/statm: size resident shared ... in pages; one small read.
    FILE *f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return -1;
    long long size = 0, resident = 0;
    int n = std::fscanf(f, "%lld %lld", &size, &resident);
    std::fclose(f);
    if (n != 2) return -1;
    return resident * (int64_t)sysconf(_SC_PAGESIZE);
#elif defined(__APPLE__)
    mach_task_basic_info_data_t info;
    mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;
    if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, (task_info_t)&info, &count) != KERN_SUCCESS) return -1;
    return (int64_t)info.resident_size;
#else
    return -1;
#endif
}

}  // namespace taskleak
