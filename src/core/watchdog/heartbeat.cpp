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
    PyObject_HEAD
    PyObject *inner;  // the selector's bound select method
    int slot;
    uint32_t gen;
    vectorcallfunc vectorcall;
};

PyObject *heartbeat_call(PyObject *self_obj, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    auto *self = (SelectHeartbeat *)self_obj;
    Watchdog &w = Watchdog::get();
    w.enter_idle(self->slot, self->gen);
    if (w.has_closed()) deliver_closed_episodes();
    PyObject *r = PyObject_Vectorcall(self->inner, args, nargsf, kwnames);
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
    self->slot = slot;
    self->gen = gen;
    self->vectorcall = heartbeat_call;
    return (PyObject *)self;
}

int heartbeat_traverse(PyObject *o, visitproc visit, void *arg) {
    Py_VISIT(((SelectHeartbeat *)o)->inner);
    Py_VISIT(Py_TYPE(o));
    return 0;
}

int heartbeat_clear(PyObject *o) {
    Py_CLEAR(((SelectHeartbeat *)o)->inner);
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
    {Py_tp_doc, (void *)"SelectHeartbeat(inner, slot, gen): calls inner (a selector's select) and "
                        "publishes the loop's idle/busy heartbeat around the call."},
    {0, nullptr},
};

PyType_Spec heartbeat_spec = {
    "taskleak._core.SelectHeartbeat", sizeof(SelectHeartbeat), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL, heartbeat_slots,
};

}  // namespace

PyObject *make_select_heartbeat_type() { return PyType_FromSpec(&heartbeat_spec); }

}  // namespace taskleak::watchdog
