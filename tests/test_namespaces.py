"""Every public name still imports from `taskleak`, and the topic namespaces
(`taskleak.live`, `taskleak.blocking`, `taskleak.heap`, `taskleak.monitor`,
`taskleak.model`) hand on the same objects."""

import importlib

import taskleak

# Every name of the public API as of the layout change (issue 17): none may go.
PUBLIC = {
    "Alert",
    "AlertGroup",
    "Anomaly",
    "Detector",
    "GroupStat",
    "Monitor",
    "Sample",
    "Server",
    "serve",
    "KINDS",
    "Leak",
    "LeakCheck",
    "TaskLeakError",
    "TaskLeakWarning",
    "check",
    "Frame",
    "Growth",
    "GrowthRow",
    "HeapIndex",
    "HolderPath",
    "growth",
    "who_holds",
    "LossEvent",
    "Snapshot",
    "TaskInfo",
    "clear_loss_events",
    "install",
    "is_installed",
    "loss_events",
    "snapshot",
    "status",
    "uninstall",
    "dump",
    "task_graph",
    "TaskGraph",
    "WaitTarget",
    "Why",
    "why",
    "Episode",
    "LoopBlockedError",
    "Watch",
    "block_episodes",
    "watch_blocking",
}

TOPICS = {
    "taskleak.live": ["Server", "serve"],
    "taskleak.blocking": ["Episode", "Watch", "block_episodes", "watch_blocking"],
    "taskleak.heap": ["Growth", "GrowthRow", "HeapIndex", "HolderPath", "who_holds"],
    "taskleak.monitor": ["Alert", "AlertGroup", "Anomaly", "Detector", "GroupStat", "Monitor", "Sample"],
    "taskleak.model": ["Snapshot", "TaskInfo"],
}


def test_every_public_name_is_still_there():
    assert PUBLIC <= set(taskleak.__all__)
    missing = [n for n in taskleak.__all__ if not hasattr(taskleak, n)]
    assert missing == []


def test_a_submodule_is_not_shadowed_by_a_function_of_its_name():
    import types

    import taskleak.heap.growth as growth_module
    import taskleak.model.snapshot as snapshot_module

    assert isinstance(growth_module, types.ModuleType) and isinstance(snapshot_module, types.ModuleType)


def test_topic_namespaces_hand_on_the_same_objects():
    for module, names in TOPICS.items():
        mod = importlib.import_module(module)
        for name in names:
            assert getattr(mod, name) is getattr(taskleak, name), f"{module}.{name}"
            assert name in mod.__all__, f"{module}.__all__ lacks {name}"
