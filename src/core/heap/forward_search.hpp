// Who holds one object, without an index: a breadth-first search forward
// from the roots over the references the collector sees (tp_traverse),
// stopping at the level where the target is first reached. It keeps a parent
// link only for the objects it visits, so a single query costs the part of
// the heap between the roots and the target, not a walk of the whole heap
// (HeapIndex, for many queries, does that once).
//
// Nothing runs but tp_traverse between the first root and the last path: no
// Python code, no Python allocation, so every visited address stays the live
// object it was when reached.
#pragma once
#include "heap/heap_index.hpp"
#include <Python.h>
#include <vector>

namespace taskleak {

struct ForwardSearchStats {
    size_t visited = 0;      // objects reached (given a parent link)
    int depth = 0;           // level at which the search ended
    bool exhausted = false;  // everything reachable within max_depth was seen
};

// Paths root-object ... target (strong references in each chain), shortest
// first, at most `max_paths`, each from a different holder of the target
// when possible. `roots` are searched in order within each level; `stops`,
// and objects whose type is one of `stop_types`, are never entered. Never
// raises; an empty result means "not reachable from the roots within
// max_depth references".
std::vector<HolderChain> forward_search(PyObject *target, const std::vector<PyObject *> &roots,
                                        const std::vector<PyObject *> &stops, const std::vector<PyObject *> &stop_types,
                                        int max_depth, int max_paths, ForwardSearchStats *stats);

// The same search for several targets at once (a leak check's finished
// tasks): one walk, ending when every target is reached (with the same
// extra levels as above for each) or nothing is left within max_depth.
// Targets are never entered. Result i holds the paths to targets[i].
std::vector<std::vector<HolderChain>> forward_search_many(const std::vector<PyObject *> &targets,
                                                          const std::vector<PyObject *> &roots,
                                                          const std::vector<PyObject *> &stops,
                                                          const std::vector<PyObject *> &stop_types, int max_depth,
                                                          int max_paths, ForwardSearchStats *stats);

}  // namespace taskleak
