"""taskleak/_core.pyi against the built extension.

The stub is written by hand (from nanobind's stubgen draft, with the row
shapes the bindings build), so nothing regenerates it when a binding
changes: this test is what keeps the two together. It compares names and
parameter lists (names, kinds, which have defaults), never types: types are
the stub's own claim, checked by mypy against the Python callers.

Where the parameters come from at run time:
- nanobind functions and methods: ``__nb_signature__`` (one entry per overload);
- the plain C callables and types (creation hook, chaining factory, heartbeats):
  ``__text_signature__``, from the ``name(params)\\n--\\n\\n`` form of their docs;
- slot wrappers (``__call__``, ``__get__``) and methods without a text
  signature declare no parameters of their own: only their names are checked.
"""

from __future__ import annotations

import ast
import asyncio
import re
import types
from pathlib import Path
from typing import Any

import pytest

from taskleak import _core

# The stub installed next to the module: what a type checker of an installed
# taskleak reads (`make test` reinstalls from the sources first).
STUB = Path(_core.__file__).with_name("_core.pyi")

# (name, kind, has_default); the names of *args / **kwargs do not matter.
Param = tuple[str, str, bool]

# Dunders that are part of a class's interface (the rest is CPython's).
_INTERFACE_DUNDERS = {"__init__", "__call__", "__get__", "__len__", "__wrapped__"}
_SIMPLE_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


# ---- the stub ------------------------------------------------------------------


class StubClass:
    def __init__(self) -> None:
        self.methods: dict[str, list[ast.FunctionDef]] = {}
        self.properties: set[str] = set()
        self.static: set[str] = set()


class Stub:
    """What a .pyi declares: runtime names, and names that exist only for the type checker."""

    def __init__(self, source: str) -> None:
        self.functions: dict[str, list[ast.FunctionDef]] = {}
        self.classes: dict[str, StubClass] = {}
        self.constants: dict[str, ast.expr] = {}
        self.type_only: set[str] = set()
        self.typed_dicts: dict[str, dict[str, ast.expr]] = {}
        self.aliases: dict[str, ast.expr] = {}
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef):
                self.functions.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.ClassDef):
                if any(_name_of(b) == "TypedDict" for b in node.bases):
                    self.type_only.add(node.name)
                    self.typed_dicts[node.name] = {
                        f.target.id: f.annotation
                        for f in node.body
                        if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)
                    }
                else:
                    self.classes[node.name] = _stub_class(node)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if _name_of(node.annotation) == "TypeAlias":
                    self.type_only.add(node.target.id)
                    if node.value is not None:
                        self.aliases[node.target.id] = node.value
                else:
                    self.constants[node.target.id] = node.annotation

    def runtime_names(self) -> set[str]:
        return set(self.functions) | set(self.classes) | set(self.constants)


def _name_of(expr: ast.expr) -> str:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return ""


def _stub_class(node: ast.ClassDef) -> StubClass:
    c = StubClass()
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            decorators = {_name_of(d) for d in item.decorator_list}
            if "property" in decorators:
                c.properties.add(item.name)
                continue
            if "staticmethod" in decorators:
                c.static.add(item.name)
            c.methods.setdefault(item.name, []).append(item)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            c.properties.add(item.target.id)  # a plain attribute reads like a property
    return c


def _params_from_ast(args: ast.arguments) -> list[Param]:
    positional = [(a.arg, "positional-only") for a in args.posonlyargs] + [
        (a.arg, "positional-or-keyword") for a in args.args
    ]
    first_default = len(positional) - len(args.defaults)
    out: list[Param] = [(n, k, i >= first_default) for i, (n, k) in enumerate(positional)]
    if args.vararg is not None:
        out.append(("*", "var-positional", False))
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        out.append((a.arg, "keyword-only", d is not None))
    if args.kwarg is not None:
        out.append(("**", "var-keyword", False))
    return out


# ---- the module ------------------------------------------------------------------


def _nb_overloads(obj: Any) -> list[list[Param]] | None:
    """Parameter lists of a nanobind function, one per overload; None if it is not one."""
    sigs = getattr(obj, "__nb_signature__", None)
    if sigs is None:
        return None
    out = []
    for sig, _doc, _defaults in sigs:
        # Default values are placeholders (\0, \1...) in nanobind's text.
        source = re.sub(r"\\\d+", "...", sig) + ": ..."
        fn = ast.parse(source).body[0]
        assert isinstance(fn, ast.FunctionDef), sig
        out.append(_params_from_ast(fn.args))
    return out


def _text_signature(obj: Any) -> list[Param] | None:
    """Parameters from a C callable's own __text_signature__; None if it declares none."""
    text = getattr(obj, "__text_signature__", None)
    if not isinstance(text, str) or not text:
        return None
    # "($self, a, /)": the bound first parameter is CPython's, not the callable's.
    text = re.sub(r"^\(\$\w+,?\s*(/,?\s*)?", "(", text)
    fn = ast.parse(f"def f{text}: ...").body[0]
    assert isinstance(fn, ast.FunctionDef), text
    return _params_from_ast(fn.args)


def _without_self(params: list[Param]) -> list[Param]:
    return params[1:]


# ---- the comparison ------------------------------------------------------------------


def stub_problems(source: str, module: types.ModuleType) -> list[str]:
    """Every disagreement between a stub's text and the built module, one line each."""
    stub = Stub(source)
    problems: list[str] = []
    runtime = {n for n in dir(module) if not n.startswith("_")}
    for name in sorted(runtime - stub.runtime_names()):
        problems.append(f"{name}: in the module, not in the stub")
    for name in sorted(stub.runtime_names() - runtime):
        problems.append(f"{name}: in the stub, not in the module")
    for name in sorted(stub.type_only & runtime):
        problems.append(f"{name}: a type-only name in the stub shadows a name of the module")
    for name, annotation in stub.constants.items():
        want = _SIMPLE_TYPES.get(_name_of(annotation))
        if name in runtime and want is not None and not isinstance(getattr(module, name), want):
            problems.append(
                f"{name}: the stub says {want.__name__}, the module has {type(getattr(module, name)).__name__}"
            )
    for name, defs in stub.functions.items():
        if name in runtime:
            problems += _compare_callable(name, getattr(module, name), defs, method=False)
    for name, cls in stub.classes.items():
        if name in runtime:
            problems += _compare_class(name, getattr(module, name), cls)
    return problems


def _compare_callable(where: str, obj: Any, defs: list[ast.FunctionDef], method: bool) -> list[str]:
    if isinstance(obj, type) or not callable(obj):
        return [f"{where}: a function in the stub, a {type(obj).__name__} in the module"]
    if isinstance(obj, types.WrapperDescriptorType):
        return []  # a slot (__call__, __get__): CPython's generic signature, not the module's
    stub_sigs = [_params_from_ast(d.args) for d in defs]
    if method:
        stub_sigs = [_without_self(s) for s in stub_sigs]
    nb = _nb_overloads(obj)
    if nb is not None:
        runtime_sigs = [_without_self(s) for s in nb] if method else nb
    else:
        text = _text_signature(obj)
        if text is None:
            return []  # the module declares no parameters: the name is all there is to check
        runtime_sigs = [text]
    if stub_sigs != runtime_sigs:
        return [f"{where}: parameters differ: stub {_show(stub_sigs)}, module {_show(runtime_sigs)}"]
    return []


def _show(sigs: list[list[Param]]) -> str:
    def one(params: list[Param]) -> str:
        return (
            "("
            + ", ".join(f"{n}{'=' if d else ''}" + ("/" if k == "positional-only" else "") for n, k, d in params)
            + ")"
        )

    return " | ".join(one(s) for s in sigs)


def _compare_class(name: str, cls: Any, stub: StubClass) -> list[str]:
    if not isinstance(cls, type):
        return [f"{name}: a class in the stub, a {type(cls).__name__} in the module"]
    problems: list[str] = []
    members = {k: v for k, v in vars(cls).items() if not k.startswith("_") or k in _INTERFACE_DUNDERS}
    # A constructor: nanobind's bound __init__, or a C type's tp_new (whose
    # parameters its __text_signature__ gives). nanobind's placeholder
    # __init__ of a class without one (a wrapper_descriptor) is none.
    if "__init__" in members and not hasattr(members["__init__"], "__nb_signature__"):
        del members["__init__"]
    # A plain C type (PyType_FromSpec; nanobind's have their own metaclass).
    c_type = type(cls) is type and "__new__" in vars(cls)
    if c_type:
        members["__init__"] = cls
    stub_names = set(stub.methods) | stub.properties
    for m in sorted(set(members) - stub_names):
        problems.append(f"{name}.{m}: in the module, not in the stub")
    for m in sorted(stub_names - set(members)):
        problems.append(f"{name}.{m}: in the stub, not in the module")
    for m, value in members.items():
        where = f"{name}.{m}"
        runtime_is_property = isinstance(value, (property, types.GetSetDescriptorType, types.MemberDescriptorType))
        if m in stub.properties:
            if not runtime_is_property:
                problems.append(f"{where}: a property in the stub, a {type(value).__name__} in the module")
            continue
        if m not in stub.methods:
            continue
        if runtime_is_property:
            problems.append(f"{where}: a method in the stub, a property in the module")
            continue
        runtime_static = type(value).__name__ == "nb_func" or isinstance(value, staticmethod)
        if runtime_static != (m in stub.static):
            problems.append(f"{where}: static in {'the module' if runtime_static else 'the stub'} only")
            continue
        if m == "__init__" and c_type:
            text = _text_signature(cls)
            stub_sig = [_without_self(_params_from_ast(d.args)) for d in stub.methods[m]]
            if text is not None and stub_sig != [text]:
                problems.append(f"{where}: parameters differ: stub {_show(stub_sig)}, module {_show([text])}")
            continue
        problems += _compare_callable(where, value, stub.methods[m], method=not runtime_static)
    return problems


# ---- the tests ----------------------------------------------------------------------


def test_the_stub_is_installed_next_to_the_module() -> None:
    assert STUB.is_file(), f"{STUB} is missing: the wheel must ship _core.pyi"


def test_stub_matches_the_built_module() -> None:
    problems = stub_problems(STUB.read_text(), _core)
    assert not problems, "taskleak/_core.pyi disagrees with the built module:\n  " + "\n  ".join(problems)


def test_every_native_function_is_typed() -> None:
    # The point of the stub: no native entry point left as `Any` by default.
    stub = Stub(STUB.read_text())
    untyped = [name for name, defs in stub.functions.items() for d in defs if d.returns is None]
    untyped += [
        f"{c}.{m}"
        for c, cls in stub.classes.items()
        for m, defs in cls.methods.items()
        for d in defs
        if d.returns is None
    ]
    assert not untyped


# The check must be able to fail: each of these edits of the real stub is caught.
def _edited(pattern: str, replacement: str) -> str:
    source = STUB.read_text()
    edited, n = re.subn(pattern, replacement, source, count=1, flags=re.M)
    assert n == 1, pattern
    return edited


@pytest.mark.parametrize(
    "pattern, replacement, expected",
    [
        # a function of the module missing from the stub
        (
            r"^def watchdog_collect\(\) -> None:",
            "def _gone() -> None:",
            "watchdog_collect: in the module, not in the stub",
        ),
        # a function of the stub missing from the module
        (r"^def rss_bytes\(", "def rss_bytes_renamed(", "rss_bytes_renamed: in the stub, not in the module"),
        # a renamed parameter (nanobind signature)
        (r"^def census\(tasks:", "def census(task_list:", "census: parameters differ"),
        # a default the module does not have
        (r"max_objects: int\)", "max_objects: int = 0)", "build_heap_index: parameters differ"),
        # a parameter too many on a method
        (
            r"def column\(self, name: str\)",
            "def column(self, name: str, extra: int)",
            "Census.column: parameters differ",
        ),
        # a plain C function (text signature)
        (
            r"def gc_phase\(phase: str, info: dict\[str, int\], /\)",
            "def gc_phase(phase: str, /)",
            "gc_phase: parameters differ",
        ),
        # a C type's constructor (text signature)
        (
            r"def __init__\(self, inner: Callable\[\.\.\., Any\], slot: int, gen: int\)",
            "def __init__(self, inner: Callable[..., Any], slot: int)",
            "SelectHeartbeat.__init__: parameters differ",
        ),
        # a property declared as a method
        (
            r"    @property\n    def ticks\(self\) -> int: \.\.\.",
            "    def ticks(self) -> int: ...",
            "Sampler.ticks: a method in the stub, a property in the module",
        ),
        # a static method declared as a method
        (
            r"    @staticmethod\n    def theil_sen_slope\(values",
            "    def theil_sen_slope(self, values",
            "WindowDetector.theil_sen_slope: static in the module only",
        ),
        # a constant of the wrong type
        (r"^FRAME_WALK: str", "FRAME_WALK: int", "FRAME_WALK: the stub says int"),
    ],
)
def test_the_check_catches_a_disagreement(pattern: str, replacement: str, expected: str) -> None:
    problems = stub_problems(_edited(pattern, replacement), _core)
    assert any(p.startswith(expected) for p in problems), problems


def test_the_check_catches_a_class_member_missing_from_the_stub() -> None:
    problems = stub_problems(_edited(r"^    def forget_after_fork\(self\) -> None:\n.*\n", ""), _core)
    assert "Sampler.forget_after_fork: in the module, not in the stub" in problems


# ---- the row shapes ------------------------------------------------------------------
# Names and parameters say nothing of what a binding builds: these call the
# module and hold what comes back against the stub's TypedDicts and tuples.


def _tuple_arity(stub: Stub, alias: str) -> int:
    """How many items the stub's `alias = tuple[...]` declares."""
    value = stub.aliases[alias]
    assert isinstance(value, ast.Subscript) and _name_of(value.value) == "tuple", alias
    items = value.slice
    return len(items.elts) if isinstance(items, ast.Tuple) else 1


def _value_fits(value: object, annotation: ast.expr) -> bool:
    """Whether `value` fits a simple annotation (int, float, str, bool, list[...]);
    True for anything more complex (typed by mypy, not here)."""
    name = _name_of(annotation.value) if isinstance(annotation, ast.Subscript) else _name_of(annotation)
    if name == "bool":
        return type(value) is bool
    if name == "int":
        return type(value) is int
    if name == "float":
        return type(value) is float
    if name == "str":
        return type(value) is str
    if name == "list":
        return type(value) is list
    return True


def test_dicts_of_the_module_match_their_typeddicts(tracked: Any) -> None:
    stub = Stub(STUB.read_text())
    checked = []
    for name, defs in stub.functions.items():
        fn = defs[0]
        td = _name_of(fn.returns) if fn.returns is not None else ""
        required = len(fn.args.posonlyargs) + len(fn.args.args) - len(fn.args.defaults)
        if td not in stub.typed_dicts or required:
            continue  # not a TypedDict, or it cannot be called without arguments
        value = getattr(_core, name)()
        fields = stub.typed_dicts[td]
        assert set(value) == set(fields), f"{name}() keys vs {td}: {sorted(set(value) ^ set(fields))}"
        wrong = {k: type(v).__name__ for k, v in value.items() if not _value_fits(v, fields[k])}
        assert not wrong, f"{name}() values that do not fit {td}: {wrong}"
        checked.append(name)
    assert sorted(checked) == ["stats", "tally_tasks", "watchdog_stats"]


def test_rows_of_the_module_match_their_tuples(tracked: Any) -> None:
    stub = Stub(STUB.read_text())
    rows: dict[str, Any] = {}

    async def main() -> None:
        gate = asyncio.Event()
        task = asyncio.get_running_loop().create_task(gate.wait())
        await asyncio.sleep(0)
        census = _core.census([task])
        rows["CensusRow"] = census.row(0)
        rows["CreationInfo"] = _core.creation_info(task)
        rows["RawFrame"] = _core.capture_stack()[0]
        groups = _core.tally_tasks()["groups"]
        rows["TallyGroup"] = groups[0] if groups else None
        gate.set()
        await task
        del census

    asyncio.run(main())
    for alias, row in rows.items():
        assert isinstance(row, tuple), (alias, row)
        want = _tuple_arity(stub, alias)
        assert len(row) == want, f"{alias}: {len(row)} items, the stub says {want}"
    detector = _core.WindowDetector(
        window=5,
        sigma=2.0,
        consecutive=1,
        min_stddev=0.0,
        min_rise=0.0,
        min_rise_ratio=0.0,
        trend_z=3.0,
        trend_blocks=3,
        horizon=15,
        warmup=5,
    )
    alerts = detector.update_many([1.0, 1.1, 0.9, 1.0, 1.05, 1.0, 50.0])
    assert alerts, "the detector should alert on the jump"
    assert len(alerts[0][1]) == _tuple_arity(stub, "AnomalyTuple")
