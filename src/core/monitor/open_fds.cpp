#include "monitor/open_fds.hpp"
#if defined(__linux__)
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace taskleak {

#if defined(__linux__)
// Is descriptor `fd` a TCP socket in CLOSE_WAIT (the peer sent FIN, this
// process has not closed it)? A read-only question: the kernel copies at most
// `len` bytes of tcp_info, and its first byte is the state. Any other kind of
// descriptor answers ENOTSOCK or EOPNOTSUPP. A number reused between the
// listing and this call is misread for one sample at most.
static bool peer_closed(int fd) {
    unsigned char state = 0;
    socklen_t len = sizeof state;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &state, &len) != 0 || len < 1) return false;
    return state == 8;  // TCP_CLOSE_WAIT in the kernel's enum (include/net/tcp_states.h)
}
#endif

OpenFds current_open_fds() {
    OpenFds out;
#if defined(__linux__)
    // One entry per descriptor in /proc/self/fd, read with getdents64 into a
    // stack buffer (no allocation), and one getsockopt per descriptor.
    // Measured (3.11, this machine):
    // 2.7 us for 5 descriptors, 3.8 ms for 10,000 files, 16.8 ms for 10,000
    // TCP sockets (the kernel fills a socket's whole tcp_info to hand over
    // its first byte): time of the sampler thread before it asks for the
    // GIL, never of the GIL.
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return out;
    alignas(8) char buf[16384];
    int64_t n = 0, closed = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, dir, buf, sizeof buf);
        if (got < 0) {
            close(dir);
            return out;
        }
        if (got == 0) break;
        for (long off = 0; off < got;) {
            // linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
            unsigned short reclen;
            __builtin_memcpy(&reclen, buf + off + 16, sizeof reclen);
            const char *name = buf + off + 19;
            if (name[0] != '.') {  // not "." or ".."
                ++n;
                int fd = 0;
                for (; *name >= '0' && *name <= '9'; ++name) fd = fd * 10 + (*name - '0');
                if (fd != dir && peer_closed(fd)) ++closed;
            }
            off += reclen;
        }
    }
    close(dir);
    out.open = n > 0 ? n - 1 : 0;  // the directory's own descriptor is listed too
    out.peer_closed = closed;
#endif
    return out;
}

}  // namespace taskleak
