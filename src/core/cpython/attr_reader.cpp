#include "cpython/attr_reader.hpp"

namespace taskleak::cpython {

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
    if (!PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG) || tp->tp_version_tag == 0) return;
    version_ = tp->tp_version_tag;
    get_ = def->get;
    closure_ = def->closure;
}

}  // namespace taskleak::cpython
