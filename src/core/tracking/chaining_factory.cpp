// The chaining task factory, in C++: where there is no task registry to hook
// (3.14+ keeps tasks in per-thread lists) it is the creation hook, so it runs
// for every task. As a Python function it cost ~0.5 us a task on 3.14
// (1.45x a plain create+complete); as a vectorcall object it calls the
// previous factory (or asyncio.Task) directly and records the task.
#include <Python.h>
#include <structmember.h>

#include "tracking/tracker.hpp"

namespace taskleak {

namespace {

struct ChainingFactory {
    PyObject_HEAD PyObject *previous;  // the loop's factory before ours, or NULL
    PyObject *task_type;               // asyncio.Task, used when there is no previous factory
    vectorcallfunc vectorcall;
};

// "loop" and ("loop",): the keyword names of the common call
// Task(coro, loop=loop), made once when the type is made (nullptr if that
// failed: then the general path builds them per call).
PyObject *g_str_loop = nullptr;
PyObject *g_loop_kwnames = nullptr;

// factory(loop, coro, **kwargs) -> task
PyObject *factory_call(PyObject *self_obj, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    auto *self = (ChainingFactory *)self_obj;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *task;
    if (self->previous != nullptr) {
        task = PyObject_Vectorcall(self->previous, args, nargsf, kwnames);
    } else {
        if (nargs != 2) {
            PyErr_SetString(PyExc_TypeError, "task factory expects (loop, coro, **kwargs)");
            return nullptr;
        }
        // asyncio.Task(coro, *, loop=loop, **kwargs)
        Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        if (nkw == 0 && g_loop_kwnames != nullptr) {
            PyObject *argv[2] = {args[1], args[0]};
            task = PyObject_Vectorcall(self->task_type, argv, 1, g_loop_kwnames);
            goto created;
        }
        if (g_str_loop == nullptr) {
            PyErr_SetString(PyExc_RuntimeError, "taskleak: ChainingFactory is not initialised");
            return nullptr;
        }
        PyObject *names = PyTuple_New(nkw + 1);
        if (names == nullptr) return nullptr;
        PyObject *small[8];
        PyObject **argv = nkw + 2 <= 8 ? small : (PyObject **)PyMem_Malloc(sizeof(PyObject *) * (size_t)(nkw + 2));
        if (argv == nullptr) {
            Py_DECREF(names);
            return PyErr_NoMemory();
        }
        argv[0] = args[1];
        for (Py_ssize_t i = 0; i < nkw; ++i) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            PyTuple_SET_ITEM(names, i, Py_NewRef(k));
            argv[1 + i] = args[2 + i];
        }
        PyTuple_SET_ITEM(names, nkw, Py_NewRef(g_str_loop));
        argv[1 + nkw] = args[0];
        task = PyObject_Vectorcall(self->task_type, argv, 1, names);
        if (argv != small) PyMem_Free(argv);
        Py_DECREF(names);
    }
created:
    if (task != nullptr) {
        // Never raises; never let tracking break creation. The loop is the
        // factory's first argument (when it was called as a factory). A call
        // that returned a task left no error set, so there is none to keep.
        track_task(task, nargs >= 1 ? args[0] : nullptr);
        if (PyErr_Occurred()) PyErr_Clear();
    }
    return task;
}

PyTypeObject *factory_type = nullptr;  // set when the type is made

PyObject *factory_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *previous = Py_None, *task_type = nullptr;
    static const char *kwlist[] = {"previous", "task_type", nullptr};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:ChainingFactory", (char **)kwlist, &previous, &task_type))
        return nullptr;
    auto *self = (ChainingFactory *)type->tp_alloc(type, 0);
    if (self == nullptr) return nullptr;
    self->previous = previous == Py_None ? nullptr : Py_NewRef(previous);
    self->task_type = Py_NewRef(task_type);
    self->vectorcall = factory_call;
    return (PyObject *)self;
}

int factory_traverse(PyObject *o, visitproc visit, void *arg) {
    auto *self = (ChainingFactory *)o;
    Py_VISIT(self->previous);
    Py_VISIT(self->task_type);
    Py_VISIT(Py_TYPE(o));
    return 0;
}

int factory_clear(PyObject *o) {
    auto *self = (ChainingFactory *)o;
    Py_CLEAR(self->previous);
    Py_CLEAR(self->task_type);
    return 0;
}

void factory_dealloc(PyObject *o) {
    PyTypeObject *tp = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    factory_clear(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

PyObject *get_wrapped(PyObject *o, void *) {
    auto *self = (ChainingFactory *)o;
    return Py_NewRef(self->previous ? self->previous : Py_None);
}

PyObject *get_true(PyObject *, void *) { Py_RETURN_TRUE; }

PyGetSetDef factory_getset[] = {
    {"__wrapped__", get_wrapped, nullptr, "the factory this one chains to (None: asyncio.Task)", nullptr},
    {"_taskleak_factory", get_true, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef factory_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(ChainingFactory, vectorcall), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot factory_slots[] = {
    {Py_tp_new, (void *)factory_new},
    {Py_tp_call, (void *)PyVectorcall_Call},
    {Py_tp_traverse, (void *)factory_traverse},
    {Py_tp_clear, (void *)factory_clear},
    {Py_tp_dealloc, (void *)factory_dealloc},
    {Py_tp_getset, (void *)factory_getset},
    {Py_tp_members, (void *)factory_members},
    // "name(params)\n--\n\n": CPython's form for a __text_signature__.
    {Py_tp_doc, (void *)"ChainingFactory(previous, task_type)\n--\n\n"
                        "A task factory that creates tasks with `previous` (or task_type) and records their creation."},
    {0, nullptr},
};

PyType_Spec factory_spec = {
    "taskleak._core.ChainingFactory",
    sizeof(ChainingFactory),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    factory_slots,
};

// ---- BaseEventLoop.create_task in C ----------------------------------------
//
// In factory mode every asyncio loop's task factory is ours, so
// loop.create_task(coro) runs a Python method whose only work is
// `self._check_closed()` and `return self._task_factory(self, coro, **kw)`:
// a frame, a method call and a **kwargs call per task, a tenth of a
// create+complete on 3.14. This method descriptor does the same in C when
// it can prove the outcome is the same: the loop is open, `_check_closed`
// is BaseEventLoop's own and the factory is a ChainingFactory. In every
// other case (closed loop, overridden _check_closed, another factory, odd
// arguments) it calls the original Python method, so behaviour, errors and
// tracebacks are the original's.

struct FastCreateTask {
    PyObject_HEAD PyObject *original;  // BaseEventLoop.create_task (a function)
    PyObject *check_closed;            // BaseEventLoop._check_closed (a function)
    vectorcallfunc vectorcall;
};

// Interned once when the type is made (nullptr if that failed: then every
// call takes the original method). Plain globals, not function-local
// statics, whose guard is checked on every call.
PyObject *g_str_closed = nullptr;
PyObject *g_str_check_closed = nullptr;
PyObject *g_str_task_factory = nullptr;

// create_task(self, coro, **kwargs)
PyObject *fast_create_task(PyObject *descr, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    auto *me = (FastCreateTask *)descr;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == 2 && g_str_task_factory != nullptr) {
        PyObject *self = args[0];
        // The class attribute lookup is cached by the interpreter (type version tags).
        PyObject *check = _PyType_Lookup(Py_TYPE(self), g_str_check_closed);  // borrowed
        if (check == me->check_closed) {
            PyObject *closed = PyObject_GetAttr(self, g_str_closed);
            int is_closed = closed ? PyObject_IsTrue(closed) : -1;
            Py_XDECREF(closed);
            if (is_closed == 0) {
                PyObject *factory = PyObject_GetAttr(self, g_str_task_factory);
                if (factory != nullptr && Py_TYPE(factory) == factory_type) {
                    // factory(loop, coro, **kwargs): exactly our arguments.
                    PyObject *task = factory_call(factory, args, 2, kwnames);
                    Py_DECREF(factory);
                    return task;
                }
                Py_XDECREF(factory);
            }
            if (PyErr_Occurred()) PyErr_Clear();  // the original will meet it again and raise it
        }
    }
    return PyObject_Vectorcall(me->original, args, nargsf, kwnames);
}

PyObject *fast_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *original = nullptr, *check_closed = nullptr;
    static const char *kwlist[] = {"original", "check_closed", nullptr};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:FastCreateTask", (char **)kwlist, &original, &check_closed))
        return nullptr;
    if (!PyCallable_Check(original)) {
        PyErr_SetString(PyExc_TypeError, "original must be callable");
        return nullptr;
    }
    auto *self = (FastCreateTask *)type->tp_alloc(type, 0);
    if (self == nullptr) return nullptr;
    self->original = Py_NewRef(original);
    self->check_closed = Py_NewRef(check_closed);
    self->vectorcall = fast_create_task;
    return (PyObject *)self;
}

int fast_traverse(PyObject *o, visitproc visit, void *arg) {
    auto *self = (FastCreateTask *)o;
    Py_VISIT(self->original);
    Py_VISIT(self->check_closed);
    Py_VISIT(Py_TYPE(o));
    return 0;
}

int fast_clear(PyObject *o) {
    auto *self = (FastCreateTask *)o;
    Py_CLEAR(self->original);
    Py_CLEAR(self->check_closed);
    return 0;
}

void fast_dealloc(PyObject *o) {
    PyTypeObject *tp = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    fast_clear(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

// A method: bound when read from an instance (`f = loop.create_task`);
// calls of the form loop.create_task(...) skip the binding
// (Py_TPFLAGS_METHOD_DESCRIPTOR).
PyObject *fast_descr_get(PyObject *self, PyObject *obj, PyObject *) {
    if (obj == nullptr || obj == Py_None) return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

PyObject *fast_attr(PyObject *o, void *name) {
    auto *self = (FastCreateTask *)o;
    if (self->original == nullptr) Py_RETURN_NONE;
    return PyObject_GetAttrString(self->original, (const char *)name);
}

PyObject *fast_wrapped(PyObject *o, void *) {
    auto *self = (FastCreateTask *)o;
    return Py_NewRef(self->original ? self->original : Py_None);
}

PyGetSetDef fast_getset[] = {
    {"__wrapped__", fast_wrapped, nullptr, "the Python method this one stands in for", nullptr},
    {"__name__", fast_attr, nullptr, nullptr, (void *)"__name__"},
    {"__qualname__", fast_attr, nullptr, nullptr, (void *)"__qualname__"},
    {"__doc__", fast_attr, nullptr, nullptr, (void *)"__doc__"},
    {"_taskleak_create_task", get_true, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef fast_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(FastCreateTask, vectorcall), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot fast_slots[] = {
    {Py_tp_new, (void *)fast_new},
    {Py_tp_call, (void *)PyVectorcall_Call},
    {Py_tp_descr_get, (void *)fast_descr_get},
    {Py_tp_traverse, (void *)fast_traverse},
    {Py_tp_clear, (void *)fast_clear},
    {Py_tp_dealloc, (void *)fast_dealloc},
    {Py_tp_getset, (void *)fast_getset},
    {Py_tp_members, (void *)fast_members},
    {0, nullptr},
};

PyType_Spec fast_spec = {
    "taskleak._core.FastCreateTask",
    sizeof(FastCreateTask),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    fast_slots,
};

}  // namespace

PyObject *make_chaining_factory_type() {
    if (g_str_loop == nullptr) {
        g_str_loop = PyUnicode_InternFromString("loop");
        if (g_str_loop == nullptr) return nullptr;
        g_loop_kwnames = PyTuple_Pack(1, g_str_loop);
        if (g_loop_kwnames == nullptr) PyErr_Clear();  // the general path builds it per call
    }
    PyObject *t = PyType_FromSpec(&factory_spec);
    factory_type = (PyTypeObject *)t;  // the module keeps it alive
    return t;
}

PyObject *make_fast_create_task_type() {
    if (g_str_task_factory == nullptr) {
        g_str_closed = PyUnicode_InternFromString("_closed");
        g_str_check_closed = PyUnicode_InternFromString("_check_closed");
        PyObject *tf = PyUnicode_InternFromString("_task_factory");
        if (g_str_closed == nullptr || g_str_check_closed == nullptr || tf == nullptr) {
            Py_XDECREF(tf);
            PyErr_Clear();  // the fast path stays off: calls take the original method
        } else {
            g_str_task_factory = tf;  // set last: it is what the fast path tests
        }
    }
    return PyType_FromSpec(&fast_spec);
}

}  // namespace taskleak
