// Handing closed episodes to Python: rendered into (file, line, function)
// tuples as early as possible, from the loop thread right after the block.
#pragma once
#include <Python.h>

namespace taskleak::watchdog {

// With the GIL. Renders every closed episode and passes each to the sink
// set with set_episode_sink(). Never raises; keeps any pending exception.
void deliver_closed_episodes();

// The callable receiving one rendered episode tuple at a time (or nullptr).
void set_episode_sink(PyObject *sink);

}  // namespace taskleak::watchdog
