// Object counts by type over one walk of the GC-tracked heap, plus live
// coroutine objects counted per code object (the coroutine function): the
// raw material of taskleak.growth(). Names are made in Python, from the
// (strong) type and code references kept here.
#pragma once
#include <Python.h>
#include <cstdint>
#include <utility>
#include <vector>

namespace taskleak {

class TypeCensus {
public:
    TypeCensus() = default;
    TypeCensus(const TypeCensus &) = delete;
    TypeCensus &operator=(const TypeCensus &) = delete;
    ~TypeCensus();

    // One heap walk. False with a Python exception set on failure.
    bool collect();

    std::vector<std::pair<PyObject *, size_t>> types;  // (type, count), strong refs
    std::vector<std::pair<PyObject *, size_t>> coros;  // (code, count), strong refs
    size_t total = 0;                                  // GC-tracked objects seen
};

}  // namespace taskleak
