# Types of taskleak._core, the C++ extension (src/core/, nanobind + a few
# plain C types on the task-creation hot path).
#
# Drafted with nanobind's stubgen (`python -m nanobind.stubgen -m
# taskleak._core`; see tools/core_stubgen.py) and then improved by hand:
# stubgen can only say `object`, `tuple` or `dict` where a binding builds a
# Python object itself, while the shapes below are read from the bindings
# (src/core/module.cpp, src/core/*/*_bindings.cpp). tests/test_core_stub.py
# fails when this file and the built module disagree on a name or on a
# parameter list; types are checked by mypy against the Python callers.
#
# Names declared with `TypeAlias` or as a `TypedDict` exist only here, for
# the type checker: import them under `if TYPE_CHECKING:`.
import asyncio
import contextvars
import types
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias, TypedDict

# ---- row shapes ----------------------------------------------------------------

RawFrame: TypeAlias = tuple[str, int, str]
"""(filename, lineno, function) of one frame, as render() in module.cpp makes it."""

CreationInfo: TypeAlias = tuple[int, int, int, int, list[RawFrame] | None, bool, int]
"""(serial, parent_serial, created_ns, thread_ident, frames innermost first | None, dropped, scope)."""

CensusRow: TypeAlias = tuple[asyncio.Task[Any], int, int, int, int | None, int, int, int, Any, Any]
"""(task, state, serial, parent_serial, created_ns | None, thread_ident, creation_id, chain_id,
waiter | None, leaf | None). state: 0 pending, 1 done, 2 cancelled, 3 failed. creation_id: -1
unknown, -2 dropped; chain_id: -1 none."""

HolderChain: TypeAlias = tuple[int, list[Any]]
"""(root, [root object, ..., target]): one path of references; `root` indexes the roots given."""

AnomalyTuple: TypeAlias = tuple[str, float, float, float, float, float, int]
"""(kind "spike" | "trend", value, mean, stddev, threshold, slope_per_sample, samples)."""

TaskRef: TypeAlias = weakref.ref[asyncio.Task[Any]]
"""taskleak's weak reference to a task (the tally's example of a group)."""

TallyGroup: TypeAlias = tuple[int, types.CodeType | type, int, int, int, TaskRef | None, bytes | None, bytes | None]
"""(stack_id (-1 unknown, -2 dropped), the coroutine's code object (or the awaitable's type), pending,
done, oldest_ns (-1 unknown), the example task (see tally_tasks) | None, ages | None,
lifetimes | None). ages: the pending tasks' ages, lifetimes: those of tasks seen pending at an earlier
call that finished or went since, each as AGE_BUCKETS native uint32 counts of half-octave millisecond
buckets (age_bucket_floor_ms). A group with no live task left may appear with pending = done = 0 for
its lifetimes."""

RawEpisodeFrame: TypeAlias = tuple[str | None, int, str | None, bool]
"""(filename | None, lineno, qualname | None, is_coroutine) of a sampled frame (None: code gone)."""

RawEpisode: TypeAlias = tuple[
    int, int, int, int, int, int, int, int, int, int, int, list[tuple[int, list[RawEpisodeFrame]]], int
]
"""(seq, loop_token, thread_ident, start_ns, end_ns, detected_ns, first_sample_ns, threshold_ns,
samples, other_samples, end, [(count, frames innermost first)], first_sample_precise_ns)."""

class Tally(TypedDict):
    """What tally_tasks() counts: tracked tasks by state, and by group."""

    live: int
    pending: int
    done: int
    groups: list[TallyGroup]
    gil_ns: int
    max_hold_ns: int
    holds: int
    wall_ns: int
    created_total: int
    generation: int
    gone_during_read: int
    read_ns: int

class CoreStats(TypedDict):
    """stats(): the creation tracker's switches, table sizes and counters."""

    enabled: bool
    stack_depth: int
    live_records: int
    table_bytes: int
    buried_records: int
    stacks: int
    stack_bytes: int
    stack_limit: int
    stack_drops: int
    tracked_total: int
    hook_errors: int
    frame_walk: str
    record_size: int
    stack_memo_hits: int
    running_task: str
    task_lists: str
    census_spare_bytes: int
    finalizer_hook: bool

class WatchdogStats(TypedDict):
    """watchdog_stats(): the watchdog thread's settings and totals."""

    running: bool
    threshold: float
    interval: float
    stacks: str
    blocks: int
    blocked_seconds: float
    dropped: int
    samples: int

# ---- module constants ------------------------------------------------------------

FRAME_WALK: str
"""How creation stacks are walked: "direct" (interpreter frame structs) or a reduced mode."""

HEAP_WALK: str
"""How the heap was walked when the module was imported (heap_walk_mode() says the last walk)."""

# ---- creation tracking (tracking/) ----------------------------------------------------

def registry_add(task: asyncio.Task[Any], /) -> None:
    """taskleak's replacement for WeakSet.add on asyncio's task registry."""

def gc_phase(phase: str, info: dict[str, int], /) -> None:
    """taskleak's gc.callbacks entry: keeps the records of tasks being finalised until the pass ends."""

class ChainingFactory:
    """A task factory that creates tasks with `previous` (or `task_type`) and records their creation."""

    def __init__(
        self, previous: Callable[..., asyncio.Future[Any]] | None, task_type: type[asyncio.Task[Any]]
    ) -> None: ...
    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, /, **kwargs: Any) -> asyncio.Future[Any]:
        """Create a task for `coro` on `loop` and record its creation."""
    @property
    def __wrapped__(self) -> Callable[..., asyncio.Future[Any]] | None:
        """The factory this one chains to (None: task_type)."""

class FastCreateTask:
    """BaseEventLoop.create_task in C: calls the loop's ChainingFactory directly when that is provably
    what `original` would do, else `original`."""

    # Its __doc__ forwards to the method it stands in for, so the type has no
    # doc of its own to carry a text signature: the stub check sees only the
    # names of its members here, not their parameters.

    def __init__(self, original: Callable[..., asyncio.Task[Any]], check_closed: Callable[..., None]) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        """loop.create_task(coro, *, name=None, context=None), unbound: the loop comes first."""
    def __get__(self, instance: object, owner: type | None = None, /) -> Callable[..., asyncio.Task[Any]]:
        """Bound to a loop, like the Python method it stands in for."""
    @property
    def __wrapped__(self) -> Callable[..., asyncio.Task[Any]]:
        """The Python method this one stands in for."""

def configure_registry(
    data: set[weakref.ref[Any]],
    pending: list[Any],
    commit: Callable[[], object],
    remove: Callable[[weakref.ref[Any]], object],
    current_tasks: object,
) -> None:
    """Point registry_add at a WeakSet's internals (its data set, pending removals and their callbacks)."""

def set_current_tasks(current_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]]) -> None:
    """asyncio's loop -> current task dict, read to learn a new task's parent."""

def set_current_task_getter(fn: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] | None) -> None:
    """Where asyncio has no current-task dict (3.14+): a callable(loop) -> task."""

def set_loop_callback(fn: Callable[[asyncio.AbstractEventLoop], object] | None) -> None:
    """Called with each event loop the hook sees for the first time (None: no callback)."""

def enable(depth: int) -> None:
    """Record creation stacks of up to `depth` frames (clamped to 1..128) from now on."""

def disable() -> None:
    """Stop recording creations (records already made stay)."""

def release_census_spares() -> None:
    """Free the buffers kept from censuses gone for the next one."""

def is_enabled() -> bool:
    """Whether creations are being recorded."""

def track_task(task: asyncio.Task[Any]) -> bool:
    """Record the creation of `task` (factory path). Call right after creating it."""

def creation_info(task: asyncio.Task[Any]) -> CreationInfo | None:
    """The creation record of `task`, or None if it was created untracked."""

def set_scope_var(var: contextvars.ContextVar[int] | None) -> None:
    """The context variable holding the check() scope a new task is charged to."""

def set_ambient_scope(id: int) -> None:
    """The scope charged when the scope variable is unset (a test runner's task; 0: none)."""

def set_harness_task(task: asyncio.Task[Any] | None) -> None:
    """A test runner's task whose new tasks get the ambient scope; the caller keeps it alive."""

def scope_tasks(id: int) -> list[asyncio.Task[Any]]:
    """Live tasks charged to scope `id`."""

def stats() -> CoreStats:
    """The creation tracker's switches, table sizes and counters."""

def hook_task_finalizer(type: type) -> bool:
    """Learn of the deaths of tasks of `type` from its tp_finalize (no weakref per task)."""

def calibrate_running_task(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> bool:
    """Call from inside `task` running on `loop` (twice, two probes): learns where the thread state
    keeps the running task. True once confirmed."""

def set_qualname_resolver(fn: Callable[[types.CodeType], str] | None) -> None:
    """Names a code object where it has no co_qualname (3.10)."""

def buried_chain(task: asyncio.Task[Any]) -> list[RawFrame] | None:
    """Await chain captured when the collector took `task`, or None."""

def live_tasks(
    weakref_set: Iterable[weakref.ref[Any]] | None, strong_sets: Iterable[Iterable[Any]]
) -> list[asyncio.Task[Any]]:
    """Union of the registry's weakrefs, containers of tasks, and the tasks with creation records."""

def tracked_tasks() -> list[asyncio.Task[Any]]:
    """Every live task that has a creation record."""

def set_stack_limit(limit: int) -> None:
    """Most interned stacks kept; past it new stacks are dropped (and counted)."""

def monotonic_ns() -> int:
    """The clock creation times are stamped with (CLOCK_MONOTONIC), in ns."""

def capture_stack(depth: int = 32) -> list[RawFrame]:
    """The calling thread's stack as the hook sees it, innermost first."""

def await_chain(coro: Any, depth: int = 64) -> tuple[list[RawFrame], Any]:
    """(frames of the await chain from `coro`, outermost first; the innermost awaited object | None)."""

def generator_local(gen: Any, name: str) -> Any:
    """Local variable `name` of a suspended generator or coroutine, or None."""

# ---- the census (snapshots) ------------------------------------------------------------

class Census:
    """Strong references to a set of tasks, with their creation records and await chains."""

    @property
    def registry_counted(self) -> bool:
        """Whether the registry's entries were counted against the records instead of read."""
    def __len__(self) -> int: ...
    def row(self, i: int) -> CensusRow:
        """Row `i` (IndexError past the end)."""
    def column(self, name: str) -> list[int]:
        """A whole column: "state", "serial", "parent", "created", "scope", "identity" or "waiter_type"."""
    def groups(self, ints: list[int] | None = None, packed: int = 0) -> list[list[int] | bytes]:
        """Row indices grouped by creation stack, await chain, waiter type and state, largest group first.
        `ints`, if given, must be list(range(len(census))): its int objects are shared. Groups of at least
        `packed` rows (0: none) are bytes of native uint32 (memoryview(b).cast("I") reads them)."""
    def summarize(
        self, group: Sequence[int], k: int, top: int
    ) -> tuple[int, int, int, list[tuple[int, int]], list[int], list[tuple[int, int]], int]:
        """Aggregates of the rows `group`: (births, min_created, max_created, [(serial, row)] of the k
        lowest non-zero serials ascending, [row] of the first k untracked, [(parent serial, count)] of
        the `top` most common parents (ties by first appearance), distinct non-zero parents)."""
    def state_counts(self, group: Sequence[int] | None) -> list[tuple[int, int]]:
        """(count, position of the first such row in `group`, -1 if none) per state; None: every row."""
    def row_of_serial(self, serial: int) -> int:
        """The row of the task with creation number `serial`, -1 if none."""
    def creation_frames(self, id: int) -> list[RawFrame] | None:
        """A creation stack (a row's creation_id), innermost first."""
    def chain_frames(self, id: int) -> list[RawFrame] | None:
        """An await chain (a row's chain_id), outermost first."""

def census(tasks: Iterable[asyncio.Task[Any]], chain_depth: int = 64) -> Census:
    """A census of `tasks`, with await chains of up to `chain_depth` frames."""

def census_live(
    weakref_set: Iterable[weakref.ref[Any]] | None,
    strong_sets: Iterable[Iterable[Any]],
    chain_depth: int = 64,
    registry_untouched: bool = False,
    more_sets: Callable[[], Iterable[Iterable[Any]]] | None = None,
) -> Census:
    """census(live_tasks(weakref_set, strong_sets), chain_depth) in one pass, tracked tasks read from their
    records (rows in another order). registry_untouched: nothing but registry_add and its weakrefs'
    callbacks has changed the registry's set (its entries are then counted, not read, when they are all
    our records' weakrefs). more_sets: a callable returning more containers, called only when asyncio's
    own task lists (3.14+) cannot tell that the rows hold every live task already."""

def orphan_analysis(
    census: Census, holders: Iterable[object] | None = None, cap: int = 4000000
) -> tuple[list[int], list[str | None], int]:
    """Orphan check of every row: ([verdict], [type name of the external holder | None], objects
    examined). verdict: 0 not waiting, 1 reachable from outside, 2 orphaned, 3 unknown (graph over `cap`)."""

def census_objects(census: Census, i: int) -> tuple[Any, Any]:
    """(waiter | None, leaf | None) of a row, without keeping them in a Python tuple."""

# ---- the heap (heap/) --------------------------------------------------------------------

def heap_walk_mode() -> str:
    """How the last heap walk enumerated objects."""

class HeapIndexCore:
    """A reverse reference index of the GC-tracked heap (addresses only)."""

    @property
    def objects(self) -> int: ...
    @property
    def edges(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def build_seconds(self) -> float: ...
    def who_holds(
        self,
        target: object,
        roots: list[Any],
        stops: list[Any],
        max_depth: int,
        max_paths: int,
        live_seed: bool = False,
    ) -> tuple[list[HolderChain], bool]:
        """([(root, [root object ... target])], stale). root >= 0: position in `roots`; -1: a class;
        -2: nothing tracked refers to the first object."""

def build_heap_index(max_objects: int) -> HeapIndexCore:
    """One walk of the GC-tracked heap into a reverse reference index (addresses only)."""

def forward_search(
    target: object, roots: list[Any], stops: list[Any], stop_types: list[type], max_depth: int, max_paths: int
) -> tuple[list[HolderChain], int, bool]:
    """([(root index, [root object ... target])], objects visited, exhausted): breadth-first from the
    roots to the first level that reaches `target`; no index, no Python code runs."""

def forward_search_many(
    targets: list[Any], roots: list[Any], stops: list[Any], stop_types: list[type], max_depth: int, max_paths: int
) -> tuple[list[list[HolderChain]], int, bool]:
    """forward_search for several targets in one walk: a list of paths per target."""

def type_census() -> tuple[int, list[tuple[type, int]], list[tuple[types.CodeType, int]]]:
    """(total, [(type, count)], [(coroutine code, count)]) over one heap walk; never collects."""

def held_from_outside(
    tasks: list[asyncio.Task[Any]], stops: list[Any], limit: int, transparent: list[Any] | None = None
) -> list[bool] | None:
    """[bool per task]: held by something outside its own reference cycles (None past `limit` objects).
    `stops` are taken as alive and not entered; `transparent` objects are entered but never alive."""

# ---- the monitor (monitor/) ------------------------------------------------------------------

class WindowDetector:
    """Sliding-window spike and trend detector over one series (window_detector.cpp)."""

    def __init__(
        self,
        window: int,
        sigma: float,
        consecutive: int,
        min_stddev: float,
        min_rise: float,
        min_rise_ratio: float,
        trend_z: float,
        trend_blocks: int,
        horizon: int,
        warmup: int,
    ) -> None: ...
    def update(self, value: float) -> AnomalyTuple | None:
        """None, or the anomaly when an episode starts."""
    def update_many(self, values: Sequence[float]) -> list[tuple[int, AnomalyTuple]]:
        """A whole series in one call: (index, anomaly) per alert."""
    @property
    def in_episode(self) -> bool: ...
    @property
    def episode_kind(self) -> str | None:
        """ "spike", "trend" or None."""
    @property
    def count(self) -> int: ...
    @property
    def alerts(self) -> int: ...
    def reset(self) -> None: ...
    @staticmethod
    def mann_kendall_z(values: Sequence[float]) -> float:
        """The Mann-Kendall trend statistic of `values`, as a z score."""
    @staticmethod
    def theil_sen_slope(values: Sequence[float]) -> float:
        """The median of pairwise slopes of `values`."""

def tally_tasks(
    max_hold_ns: int = 0, stale_after: Sequence[tuple[int, types.CodeType | type, float]] | None = None
) -> Tally:
    """Count tracked tasks by state and group; unchanged tasks' states are read without the GIL,
    and the rest holds it for at most `max_hold_ns` at a time (0: no bound). A group's example is its
    oldest pending task, or, for a group in `stale_after` ((stack_id, code, ms): the monitor's stale
    thresholds), its newest pending task at least that old, if any."""

AGE_BUCKETS: int

def age_bucket_floor_ms(bucket: int) -> float:
    """The least age in milliseconds that falls in `bucket` of tally_tasks()'s histograms."""

def tally_mode() -> str:
    """How tally_tasks() reads task state: "fields" (probed offsets) or "attributes"."""

def probe_task_fields(
    pending1: asyncio.Task[Any],
    pending2: asyncio.Task[Any],
    done: asyncio.Task[Any],
    cancelled: asyncio.Task[Any],
    coro1: Any,
    coro2: Any,
) -> bool:
    """Learn where the C Task keeps its state and coroutine from tasks in known states."""

def rss_bytes() -> int:
    """Resident set size in bytes, -1 if unknown."""

def open_fds() -> tuple[int, int]:
    """(file descriptors the process has open, TCP sockets among them whose peer closed its side: in
    CLOSE_WAIT), each -1 if unknown."""

def stack_frames(id: int) -> list[RawFrame] | None:
    """A creation stack as (filename, lineno, function) tuples, innermost first, or None."""

class Sampler:
    """A native thread calling `callback(rss_bytes, open_fds, peer_closed)` with the GIL every `interval`
    seconds (see open_fds())."""

    def __init__(self, interval: float, callback: Callable[[int, int, int], object]) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None:
        """Stop and join the thread (from the thread itself: only ask it to end)."""
    def forget_after_fork(self) -> None:
        """In a forked child: drop the thread that did not survive the fork."""
    @property
    def running(self) -> bool: ...
    @property
    def ticks(self) -> int: ...

# ---- the watchdog (blocked loops) -----------------------------------------------------------

class SelectHeartbeat:
    """Calls `inner` (a selector's select) and publishes the loop's idle/busy heartbeat around the call."""

    def __init__(self, inner: Callable[..., Any], slot: int, gen: int) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    @property
    def slot(self) -> int: ...
    @property
    def __wrapped__(self) -> Callable[..., Any]:
        """The selector's own select()."""

class PollerHeartbeat:
    """Stands in for a selector's poll object (select.epoll/poll) and publishes the loop's idle/busy
    heartbeat around poll(); every other method forwards to it."""

    def __init__(self, inner: Any, slot: int, gen: int) -> None: ...
    def poll(self, *args: Any, **kwargs: Any) -> list[tuple[int, int]]: ...
    def register(self, *args: Any, **kwargs: Any) -> Any: ...
    def modify(self, *args: Any, **kwargs: Any) -> Any: ...
    def unregister(self, *args: Any, **kwargs: Any) -> Any: ...
    def close(self, *args: Any, **kwargs: Any) -> Any: ...
    def fileno(self, *args: Any, **kwargs: Any) -> int: ...
    @property
    def slot(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def __wrapped__(self) -> Any:
        """The real poll object."""

def watchdog_start(threshold: float, interval: float) -> bool:
    """Start the watchdog thread (or retune it). True if stacks can be sampled."""

def watchdog_stop() -> None:
    """Stop the watchdog thread (releases the GIL while it joins)."""

def watchdog_now_ns() -> int:
    """The watchdog's clock (CLOCK_MONOTONIC_COARSE), in ns."""

def watchdog_running() -> bool: ...
def watchdog_set_threshold(threshold: float) -> None:
    """Seconds a loop may stay busy before it is reported blocked."""

def watchdog_acquire(token: int) -> tuple[int, int]:
    """A watch slot for the loop `token`: (slot, gen). ValueError if every slot is taken."""

def watchdog_release(slot: int, gen: int) -> None: ...
def watchdog_activate(slot: int, gen: int, thread_ident: int, period: float) -> None:
    """The loop of `slot` starts running in the calling thread; period > 0: heartbeats are periodic beats."""

def watchdog_deactivate(slot: int, gen: int) -> None:
    """The loop of `slot` stopped running; closed episodes go to the sink."""

def watchdog_beat(slot: int, gen: int) -> None:
    """A periodic heartbeat of the loop of `slot`."""

def watchdog_set_sink(fn: Callable[[RawEpisode], object] | None) -> None:
    """Where closed episodes are delivered (GIL held, never on the watchdog thread)."""

def watchdog_collect() -> None:
    """Deliver closed episodes to the sink now."""

def watchdog_open_episodes() -> list[RawEpisode]:
    """The episodes in progress now, rendered as the sink gets closed ones (end: when copied)."""

def watchdog_slot_totals(slot: int, gen: int) -> tuple[int, int]:
    """(blocks, blocked_ns) of one slot."""

def remote_code_info(code: types.CodeType) -> tuple[str, str, int, list[int]] | None:
    """The watchdog's view of a code object: (filename, qualname, flags, line of each code unit)."""

def watchdog_after_fork_child() -> None:
    """In a forked child: forget the watchdog thread and its slots."""

def watchdog_stats() -> WatchdogStats:
    """The watchdog's settings and totals."""

def watchdog_set_names(slot: int, gen: int, label: str, thread_name: str) -> None:
    """The loop's stable label and its thread's name, for answers given while it is stuck."""

# ---- the native listener (src/core/live/) ------------------------------------------

class NativeListener:
    """The debug endpoint's listening thread, which never takes the GIL."""

    def __init__(self, fd: int, unix: bool, loopback: bool, token: bytes, timeout: float, handoff: float) -> None: ...
    def set_metrics(self, arg: bytes, /) -> None: ...
    def set_info(self, arg: bytes, /) -> None: ...
    def set_static(self, path: str, content_type: str, body: bytes, public: bool) -> None:
        """Serve `body` natively for GET/HEAD `path` (any query); `public`: without the token."""
    def set_blocked(self, head: bytes, episodes: Sequence[bytes], blocks: int, running: bool, threshold: float) -> None:
        """The recorded part of /api/blocked, and the watchdog's state (watchdog_stats()) it was rendered from."""
    def take(self) -> tuple[int, bytes] | None:
        """The next request offered to Python: (fd, head bytes), or None once closed."""
    def close(self) -> None: ...
    def forget_after_fork(self) -> None: ...
    def stats(self) -> dict[str, int]: ...

def live_set_library_paths(prefixes: Sequence[str], markers: Sequence[str], cwd: str) -> None:
    """Where library code lives, for the line an episode in progress names."""

def live_blocked_now() -> tuple[str, str]:
    """The episodes in progress now: (JSON array, one line of text)."""

def live_blocked_now_metrics() -> str:
    """The live gauges of /metrics (blocked now, seconds so far, per loop label)."""

def live_loop_gauges() -> list[tuple[str, bool, float]]:
    """Each watched loop now: (stable label, blocked now, seconds blocked so far), one per label."""

def hold_gil_for_testing(seconds: float) -> None:
    """Busy in C with the GIL held for `seconds` (tests of the native path)."""
