// Reading a set's items where it is stored, without a copy: the census looks
// at the 100,000 weakrefs of asyncio's task registry (a WeakSet's `data`),
// and copying them (PySequence_List) increfs, and so writes to, every one of
// them: ~1 ms of cache misses for weakrefs the census then skips unread.
// PySetObject and setentry are the documented non-limited layout of
// cpython/setobject.h in 3.10 to 3.15.
#pragma once
#include <Python.h>

namespace taskleak::cpython {

// Calls f(key) with each key of `set` (borrowed), in table order. The caller
// must run no Python code (and make no allocation that may start the
// collector) until it is done with the keys: the set cannot change until
// then. A removed entry keeps a placeholder key with hash -1, a hash no
// real key has (hash() never returns -1): skipped.
template <class F>
void for_each_set_item(PyObject *set, F &&f) {
    auto *so = (PySetObject *)set;
    setentry *table = so->table;
    for (Py_ssize_t i = 0; i <= so->mask; ++i)
        if (table[i].key != nullptr && table[i].hash != -1) f(table[i].key);
}

}  // namespace taskleak::cpython
