"""Heap analysis: who holds an object, and which object types are growing.

``roots`` (where a holder search starts and what it never enters),
``paths`` (``HolderPath``: a found chain of references in words),
``index`` (``HeapIndex``, ``who_holds``, ``paths_to``), ``holders``
(``holders_of_finished``: the done-retained search of check() and
``taskleak run``), ``growth`` (type census), ``names`` (how types are
named). An analysis layer above the model: it needs only ``tracking`` and
the C++ core, and never imports ``diagnosis`` (which uses it), ``report``,
``monitor`` or a front end.
"""

# Not the function growth(): `taskleak.heap.growth` stays the module of that
# name (`import taskleak.heap.growth as m` would otherwise get the function).
from .growth import Growth, GrowthRow
from .index import HeapIndex, who_holds
from .paths import HolderPath

__all__ = ["Growth", "GrowthRow", "HeapIndex", "HolderPath", "who_holds"]
