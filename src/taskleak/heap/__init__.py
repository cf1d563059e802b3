"""Heap analysis: who holds an object, and which object types are growing.

``index`` (HeapIndex, who_holds), ``holders`` (the done-retained search of
check()), ``growth`` (type census), ``names`` (how types are named). May
import ``tracking`` and the primitives below it; never the model above it,
``diagnosis``, ``report`` or a front end.
"""
