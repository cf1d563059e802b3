// CPython 3.14+: reading the per-thread task lists (see task_lists.hpp).
// The offsets come from the ".AsyncioDebug" section of the object that holds
// _asyncio (its own shared library on 3.14, the interpreter itself where
// _asyncio is built in, as Debian's 3.15). That object is the one whose
// loaded segments hold the Task type's tp_dealloc; its file is read for the
// section headers, and the section's contents are read from memory.
#include "cpython/task_lists.hpp"
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <elf.h>
#include <link.h>
#include <string>
#include <vector>

#if PY_VERSION_HEX < 0x030E0000
#error "task_lists_314plus.cpp is for CPython 3.14 and later"
#endif
#if defined(Py_GIL_DISABLED)
#error "task_lists_314plus.cpp counts lists that only the GIL keeps still"
#endif

namespace taskleak::cpython {
namespace {

// _Py_AsyncioModuleDebugOffsets as 3.14 and 3.15 publish it (13 words).
struct AsyncioDebugOffsets {
    struct {
        uint64_t size, task_name, task_awaited_by, task_is_task, task_awaited_by_is_set, task_coro, task_node;
    } task_object;
    struct {
        uint64_t size, asyncio_tasks_head;
    } interpreter_state;
    struct {
        uint64_t size, asyncio_running_loop, asyncio_running_task, asyncio_tasks_head;
    } thread_state;
};
static_assert(sizeof(AsyncioDebugOffsets) == 104);

struct ListNode {  // struct llist_node
    ListNode *next, *prev;
};

struct Lists {
    bool learned = false;
    PyTypeObject *task_type = nullptr;  // strong
    uint64_t thread_head = 0, interp_head = 0, task_node = 0, task_coro = 0;
};
Lists g;

// The loaded object holding `addr`: its file and load bias.
struct Found {
    uintptr_t addr;
    std::string file;
    uintptr_t bias = 0;
    bool hit = false;
};

int find_object(struct dl_phdr_info *info, size_t, void *data) {
    auto *f = (Found *)data;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr) &ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD) continue;
        uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (f->addr >= lo && f->addr < lo + ph.p_memsz) {
            f->file = info->dlpi_name != nullptr && info->dlpi_name[0] ? info->dlpi_name : "/proc/self/exe";
            f->bias = info->dlpi_addr;
            f->hit = true;
            return 1;
        }
    }
    return 0;
}

// The address (in this file's image) and size of section `name`; 0 if none.
std::pair<uint64_t, uint64_t> section_of(const std::string &file, const char *name) {
    std::pair<uint64_t, uint64_t> none{0, 0};
    FILE *fp = std::fopen(file.c_str(), "rb");
    if (fp == nullptr) return none;
    auto read_at = [fp](uint64_t off, void *out, size_t n) {
        return std::fseek(fp, (long)off, SEEK_SET) == 0 && std::fread(out, 1, n, fp) == n;
    };
    std::pair<uint64_t, uint64_t> out = none;
    ElfW(Ehdr) eh;
    if (read_at(0, &eh, sizeof eh) && std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
        eh.e_ident[EI_CLASS] == (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) &&
        eh.e_shentsize == sizeof(ElfW(Shdr)) && eh.e_shnum > 0 && eh.e_shnum < 4096 && eh.e_shstrndx < eh.e_shnum) {
        std::vector<ElfW(Shdr)> sh(eh.e_shnum);
        if (read_at(eh.e_shoff, sh.data(), sh.size() * sizeof(ElfW(Shdr)))) {
            const ElfW(Shdr) &names = sh[eh.e_shstrndx];
            std::vector<char> strtab(names.sh_size < (1u << 20) ? names.sh_size + 1 : 0, '\0');
            if (!strtab.empty() && read_at(names.sh_offset, strtab.data(), names.sh_size)) {
                for (const ElfW(Shdr) &s : sh)
                    if (s.sh_name < names.sh_size && std::strcmp(strtab.data() + s.sh_name, name) == 0 &&
                        (s.sh_flags & SHF_ALLOC)) {
                        out = {s.sh_addr, s.sh_size};
                        break;
                    }
            }
        }
    }
    std::fclose(fp);
    return out;
}

bool head_checks_out(const ListNode *head) {
    return head->next != nullptr && head->prev != nullptr && head->next->prev == head && head->prev->next == head;
}

void learn() {
    g.learned = true;
    PyObject *mod = PyImport_ImportModule("_asyncio");
    PyObject *type = mod != nullptr ? PyObject_GetAttrString(mod, "Task") : nullptr;
    Py_XDECREF(mod);
    if (type == nullptr || !PyType_Check(type)) {
        PyErr_Clear();
        Py_XDECREF(type);
        return;
    }
    auto *tt = (PyTypeObject *)type;
    Found f{(uintptr_t)(void *)tt->tp_dealloc};
    dl_iterate_phdr(find_object, &f);
    auto [addr, size] = f.hit ? section_of(f.file, ".AsyncioDebug") : std::pair<uint64_t, uint64_t>{0, 0};
    if (addr == 0 || size < sizeof(AsyncioDebugOffsets)) {
        Py_DECREF(type);
        return;
    }
    AsyncioDebugOffsets d;
    std::memcpy(&d, (const void *)(f.bias + addr), sizeof d);
    // The section describes this very build: its Task is the type's size, its
    // offsets lie inside the structures, and this thread's list is a list.
    PyThreadState *ts = PyThreadState_Get();
    bool ok = d.task_object.size == (uint64_t)tt->tp_basicsize && d.task_object.task_node >= sizeof(PyObject) &&
              d.task_object.task_node + sizeof(ListNode) <= d.task_object.size &&
              d.task_object.task_coro >= sizeof(PyObject) &&
              d.task_object.task_coro + sizeof(PyObject *) <= d.task_object.size &&
              d.thread_state.asyncio_tasks_head >= sizeof(PyThreadState) &&
              d.thread_state.asyncio_tasks_head + sizeof(ListNode) <= d.thread_state.size &&
              d.interpreter_state.asyncio_tasks_head + sizeof(ListNode) <= d.interpreter_state.size &&
              head_checks_out((const ListNode *)((const char *)ts + d.thread_state.asyncio_tasks_head)) &&
              head_checks_out((const ListNode *)((const char *)ts->interp + d.interpreter_state.asyncio_tasks_head));
    if (!ok) {
        Py_DECREF(type);
        return;
    }
    g.task_type = tt;
    g.thread_head = d.thread_state.asyncio_tasks_head;
    g.interp_head = d.interpreter_state.asyncio_tasks_head;
    g.task_node = d.task_object.task_node;
    g.task_coro = d.task_object.task_coro;
}

}  // namespace

PyTypeObject *listed_task_type() {
    if (!g.learned) learn();
    return g.task_type;
}

const void *listed_before(PyObject *task) {
    if (g.task_type == nullptr || !PyObject_TypeCheck(task, g.task_type)) return nullptr;
    // Unlinking clears the node's pointers (pycore_llist.h's llist_remove).
    const ListNode *node = (const ListNode *)((const char *)task + g.task_node);
    return node->next != nullptr ? node->prev : nullptr;
}

const void *list_node(PyObject *task) { return (const char *)task + g.task_node; }

const void *coro_address(PyObject *task) {
    if (g.task_type == nullptr || Py_TYPE(task) != g.task_type) return nullptr;
    return *(const void *const *)((const char *)task + g.task_coro);
}

// Every list head of the calling thread's interpreter, checked; false if
// one does not check out. With the GIL held, no thread state comes or goes
// and no list changes.
static bool list_heads(std::vector<const ListNode *> *out) {
    PyThreadState *me = PyThreadState_Get();
    PyInterpreterState *interp = me->interp;
    out->push_back((const ListNode *)((const char *)interp + g.interp_head));
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != nullptr; ts = PyThreadState_Next(ts))
        out->push_back((const ListNode *)((const char *)ts + g.thread_head));
    for (const ListNode *h : *out)
        if (!head_checks_out(h)) return false;
    return true;
}

bool lists_hold_only(const std::vector<const void *> &unchecked, const std::function<bool(PyObject *)> &held) {
    if (listed_task_type() == nullptr) return false;
    std::vector<const ListNode *> heads;
    if (!list_heads(&heads)) return false;
    auto is_head = [&](const void *p) { return std::find(heads.begin(), heads.end(), p) != heads.end(); };
    // A node is only compared and turned back into its task's address: none
    // is read, so a stale one cannot fault.
    auto fine = [&](const void *p) {
        return p != nullptr && (is_head(p) || held((PyObject *)((const char *)p - g.task_node)));
    };
    for (const ListNode *h : heads)
        if (!fine(h->prev)) return false;
    for (const void *p : unchecked)
        if (!fine(p)) return false;
    return true;
}

const char *task_lists_mode() { return listed_task_type() != nullptr ? "asyncio-debug-offsets" : "unavailable"; }

}  // namespace taskleak::cpython
