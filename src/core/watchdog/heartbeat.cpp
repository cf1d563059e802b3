// The heartbeat of a selector event loop: a wrapper put as an *instance*
// attribute `select` on the loop's selector. asyncio's _run_once calls
// self._selector.select(timeout) once per iteration: entering it means the
// loop has run this iteration's callbacks and now waits for I/O (idle, never
// blocked, however long the wait); leaving it means callbacks run again
// (busy). The watchdog flags a loop that stays busy past the threshold.
// A vectorcall object adds two clock reads and a few atomic stores per
// iteration; a Python wrapper would cost a frame.
#include "watchdog/episode_delivery.hpp"
#include "watchdog/watchdog.hpp"

#include <structmember.h>

namespace taskleak::watchdog {
namespace {

struct SelectHeartbeat {
    PyObject_HEAD PyObject *inner;  // the selector's bound select method
    PyObject *func;                 // its function and self when it is a bound method: calling
    PyObject *self;                 // them directly skips the bound method's own dispatch
    int slot;
    uint32_t gen;
    vectorcallfunc vectorcall;
};

PyObject *heartbeat_call(PyObject *self_obj, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    auto *self = (SelectHeartbeat *)self_obj;
    Watchdog &w = Watchdog::get();
    w.enter_idle(self->slot, self->gen);
    if (w.has_closed()) deliver_closed_episodes();
    PyObject *r;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (self->func != nullptr && total < 8) {
        PyObject *argv[9];
        argv[1] = self->self;
        for (Py_ssize_t i = 0; i < total; ++i) argv[2 + i] = args[i];
        r = PyObject_Vectorcall(self->func, argv + 1, (size_t)(nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
    } else {
        r = PyObject_Vectorcall(self->inner, args, nargsf, kwnames);
    }
    w.leave_idle(self->slot, self->gen);
    return r;
}

PyObject *heartbeat_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *inner = nullptr;
    int slot = -1;
    unsigned int gen = 0;
    static const char *kwlist[] = {"inner", "slot", "gen", nullptr};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiI:SelectHeartbeat", (char **)kwlist, &inner, &slot, &gen))
        return nullptr;
    if (!PyCallable_Check(inner)) {
        PyErr_SetString(PyExc_TypeError, "SelectHeartbeat: inner must be callable");
        return nullptr;
    }
    auto *self = (SelectHeartbeat *)type->tp_alloc(type, 0);
    if (self == nullptr) return nullptr;
    self->inner = Py_NewRef(inner);
    if (PyMethod_Check(inner)) {
        self->func = Py_NewRef(PyMethod_GET_FUNCTION(inner));
        self->self = Py_NewRef(PyMethod_GET_SELF(inner));
    }
    self->slot = slot;
    self->gen = gen;
    self->vectorcall = heartbeat_call;
    return (PyObject *)self;
}

int heartbeat_traverse(PyObject *o, visitproc visit, void *arg) {
    Py_VISIT(((SelectHeartbeat *)o)->inner);
    Py_VISIT(((SelectHeartbeat *)o)->func);
    Py_VISIT(((SelectHeartbeat *)o)->self);
    Py_VISIT(Py_TYPE(o));
    return 0;
}

int heartbeat_clear(PyObject *o) {
    Py_CLEAR(((SelectHeartbeat *)o)->inner);
    Py_CLEAR(((SelectHeartbeat *)o)->func);
    Py_CLEAR(((SelectHeartbeat *)o)->self);
    return 0;
}

void heartbeat_dealloc(PyObject *o) {
    PyTypeObject *tp = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    heartbeat_clear(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

PyObject *get_wrapped(PyObject *o, void *) {
    auto *self = (SelectHeartbeat *)o;
    return Py_NewRef(self->inner ? self->inner : Py_None);
}

PyGetSetDef heartbeat_getset[] = {
    {"__wrapped__", get_wrapped, nullptr, "the selector's own select()", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef heartbeat_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(SelectHeartbeat, vectorcall), READONLY, nullptr},
    {"slot", T_INT, offsetof(SelectHeartbeat, slot), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot heartbeat_slots[] = {
    {Py_tp_new, (void *)heartbeat_new},
    {Py_tp_call, (void *)PyVectorcall_Call},
    {Py_tp_traverse, (void *)heartbeat_traverse},
    {Py_tp_clear, (void *)heartbeat_clear},
    {Py_tp_dealloc, (void *)heartbeat_dealloc},
    {Py_tp_getset, (void *)heartbeat_getset},
    {Py_tp_members, (void *)heartbeat_members},
    // "name(params)\n--\n\n": CPython's form for a __text_signature__.
    {Py_tp_doc,
     (void *)"SelectHeartbeat(inner, slot, gen)\n--\n\n"
             "Calls inner (a selector's select) and publishes the loop's idle/busy heartbeat around the call."},
    {0, nullptr},
};

PyType_Spec heartbeat_spec = {
    "taskleak._core.SelectHeartbeat",
    sizeof(SelectHeartbeat),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    heartbeat_slots,
};

// The cheaper heartbeat, for selectors built on a poll object (EpollSelector,
// PollSelector, DevpollSelector): it replaces the selector's own
// `_selector` (the select.epoll/poll object) and stamps around its poll().
// Being a C method called from C (the selector's Python select() calls
// self._selector.poll), it costs no Python frame of its own, unlike a
// wrapper of select() itself; every other method forwards to the poller.
struct PollerHeartbeat {
    PyObject_HEAD PyObject *inner;  // the real poll object
    PyObject *poll;                 // its bound poll method
    int slot;
    uint32_t gen;
};

PyObject *poller_poll(PyObject *o, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    auto *self = (PollerHeartbeat *)o;
    Watchdog &w = Watchdog::get();
    w.enter_idle(self->slot, self->gen);
    if (w.has_closed()) deliver_closed_episodes();
    PyObject *r = PyObject_Vectorcall(self->poll, args, (size_t)nargs, kwnames);
    w.leave_idle(self->slot, self->gen);
    return r;
}

PyObject *forward(PyObject *o, const char *name, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *m = PyObject_GetAttrString(((PollerHeartbeat *)o)->inner, name);
    if (m == nullptr) return nullptr;
    PyObject *r = PyObject_Vectorcall(m, args, (size_t)nargs, kwnames);
    Py_DECREF(m);
    return r;
}

#define TASKLEAK_FORWARD(NAME)                                                                         \
    PyObject *poller_##NAME(PyObject *o, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) { \
        return forward(o, #NAME, args, nargs, kwnames);                                                \
    }
TASKLEAK_FORWARD(register)
TASKLEAK_FORWARD(modify)
TASKLEAK_FORWARD(unregister)
TASKLEAK_FORWARD(close)
TASKLEAK_FORWARD(fileno)
#undef TASKLEAK_FORWARD

PyObject *poller_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *inner = nullptr;
    int slot = -1;
    unsigned int gen = 0;
    static const char *kwlist[] = {"inner", "slot", "gen", nullptr};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiI:PollerHeartbeat", (char **)kwlist, &inner, &slot, &gen))
        return nullptr;
    PyObject *poll = PyObject_GetAttrString(inner, "poll");
    if (poll == nullptr) return nullptr;
    auto *self = (PollerHeartbeat *)type->tp_alloc(type, 0);
    if (self == nullptr) {
        Py_DECREF(poll);
        return nullptr;
    }
    self->inner = Py_NewRef(inner);
    self->poll = poll;
    self->slot = slot;
    self->gen = gen;
    return (PyObject *)self;
}

int poller_traverse(PyObject *o, visitproc visit, void *arg) {
    Py_VISIT(((PollerHeartbeat *)o)->inner);
    Py_VISIT(((PollerHeartbeat *)o)->poll);
    Py_VISIT(Py_TYPE(o));
    return 0;
}

int poller_clear(PyObject *o) {
    Py_CLEAR(((PollerHeartbeat *)o)->inner);
    Py_CLEAR(((PollerHeartbeat *)o)->poll);
    return 0;
}

void poller_dealloc(PyObject *o) {
    PyTypeObject *tp = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    poller_clear(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

PyObject *poller_get_inner(PyObject *o, void *) {
    PyObject *inner = ((PollerHeartbeat *)o)->inner;
    return Py_NewRef(inner ? inner : Py_None);
}

PyObject *poller_get_closed(PyObject *o, void *) {
    PyObject *inner = ((PollerHeartbeat *)o)->inner;
    if (inner == nullptr) Py_RETURN_TRUE;
    return PyObject_GetAttrString(inner, "closed");
}

PyMethodDef poller_methods[] = {
    {"poll", (PyCFunction)(void (*)(void))poller_poll, METH_FASTCALL | METH_KEYWORDS,
     "the poller's poll(), with the heartbeat"},
    {"register", (PyCFunction)(void (*)(void))poller_register, METH_FASTCALL | METH_KEYWORDS, nullptr},
    {"modify", (PyCFunction)(void (*)(void))poller_modify, METH_FASTCALL | METH_KEYWORDS, nullptr},
    {"unregister", (PyCFunction)(void (*)(void))poller_unregister, METH_FASTCALL | METH_KEYWORDS, nullptr},
    {"close", (PyCFunction)(void (*)(void))poller_close, METH_FASTCALL | METH_KEYWORDS, nullptr},
    {"fileno", (PyCFunction)(void (*)(void))poller_fileno, METH_FASTCALL | METH_KEYWORDS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef poller_getset[] = {
    {"__wrapped__", poller_get_inner, nullptr, "the real poll object", nullptr},
    {"closed", poller_get_closed, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef poller_members[] = {
    {"slot", T_INT, offsetof(PollerHeartbeat, slot), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot poller_slots[] = {
    {Py_tp_new, (void *)poller_new},
    {Py_tp_traverse, (void *)poller_traverse},
    {Py_tp_clear, (void *)poller_clear},
    {Py_tp_dealloc, (void *)poller_dealloc},
    {Py_tp_methods, (void *)poller_methods},
    {Py_tp_getset, (void *)poller_getset},
    {Py_tp_members, (void *)poller_members},
    {Py_tp_doc, (void *)"PollerHeartbeat(inner, slot, gen)\n--\n\n"
                        "Stands in for a selector's poll object (select.epoll/poll) and publishes the loop's "
                        "idle/busy heartbeat around poll()."},
    {0, nullptr},
};

PyType_Spec poller_spec = {
    "taskleak._core.PollerHeartbeat", sizeof(PollerHeartbeat), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, poller_slots,
};

}  // namespace

PyObject *make_select_heartbeat_type() { return PyType_FromSpec(&heartbeat_spec); }
PyObject *make_poller_heartbeat_type() { return PyType_FromSpec(&poller_spec); }

}  // namespace taskleak::watchdog
