#include "cpython/attr_reader.hpp"

namespace taskleak::cpython {

// Whether tp_version_tag identifies the type's attributes now. Up to 3.12 the
// flag says so; 3.13 stopped setting it (3.14's header calls it unused) and
// a modified type's tag is reset to 0 instead. Checking the flag there made
// every read a descriptor lookup plus a generic getattr: ~3 ms of a 100,000
// task census on 3.14.
static bool version_tag_valid(PyTypeObject *tp) {
#if PY_VERSION_HEX >= 0x030D0000
    return tp->tp_version_tag != 0;
#else
    return PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG) && tp->tp_version_tag != 0;
#endif
}

void AttrReader::learn(PyTypeObject *tp) {
    type_ = tp;
    version_ = 0;
    get_ = nullptr;
    closure_ = nullptr;
    // Only where attribute access is the generic one (no __getattribute__
    // or __getattr__ of the type's own): there a data descriptor found on
    // the type wins over the instance dict, so calling it is the same answer.
    if (name_ == nullptr || tp->tp_getattro != PyObject_GenericGetAttr) return;
    PyObject *descr = _PyType_Lookup(tp, name_);  // borrowed; assigns a version tag
    if (descr == nullptr || Py_TYPE(descr) != &PyGetSetDescr_Type) return;
    PyGetSetDef *def = ((PyGetSetDescrObject *)descr)->d_getset;
    if (def == nullptr || def->get == nullptr) return;
    // Without a valid tag a later change to the type could go unnoticed.
    if (!version_tag_valid(tp)) return;
    version_ = tp->tp_version_tag;
    get_ = def->get;
    closure_ = def->closure;
}

}  // namespace taskleak::cpython
