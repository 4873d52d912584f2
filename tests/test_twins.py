"""``twin_built`` (engine/model/twins.py): a frozen dataclass made through an unfrozen twin is the
object the dataclass's own ``__init__`` makes, for every class the engine gives to ``twin_built``.

Those classes write the dataclass's ``__init__`` out (mypyc compiles it; ``dataclasses`` would
generate one in the interpreter) and call ``twin_built(Name)`` below the class. Every module of the
engine that does is imported and each such class checked against the ``__init__`` ``dataclasses``
would write for its fields: on the source, the object made through the twin and the written-out
``__init__`` run on a plain object of the same slots, every slot set alike, with every argument given
and with only the required ones, ``==``, ``hash``, ``repr``, the signature, ``replace``, copies and
pickles, and writes refused with ``FrozenInstanceError``; on either core (compiled, the classes are
native and their ``__init__`` compiled), the same with arguments of the declared types. The twin's
constructor is generated from the dataclass's fields, so a field added later is stored too; the
written-out ``__init__`` is compared with the fields, so one it forgets is seen."""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
import inspect
import pickle
import re
import typing
from dataclasses import KW_ONLY, InitVar, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from engine import compiled
from engine.core.alarms import ActiveAlarm
from engine.core.decisions import Decisions
from engine.model.twins import PLAIN_INIT, twin_built, twin_of
from engine.rules.compiler import CompiledRule

ROOT = Path(__file__).resolve().parents[1]
_UNSET = object()


def _twin_built() -> list[type]:
    """Every class of the engine given to ``twin_built``, found by reading the sources (a line
    ``twin_built(Name)`` below a frozen dataclass ``Name``)."""
    found: list[type] = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        names = re.findall(r"^twin_built\((\w+)\)$", text, flags=re.MULTILINE)
        if not names:
            continue
        assert "\n@twin_built\n" not in text, path  # the decorator would make the class non-native
        for name in names:
            assert re.search(rf"^@dataclass\(frozen=True, slots=True\)\nclass {name}:", text, re.MULTILINE)
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        found += [getattr(module, name) for name in names]
    return found


DECORATED = _twin_built()
# ``_V`` placeholders stand in for every declared type: compiled by mypyc (``engine.compiled``), the
# classes' ``__init__`` checks them, so these cases run on the source; ``test_..._declared_types``
# runs on either core
CASES = [pytest.param(cls, marks=pytest.mark.source_only) for cls in DECORATED]


def test_the_decorated_classes_are_found() -> None:
    """The sources' classes are the ones ``twin_built`` saw (imported with the engine), native on the
    compiled core and made through their twin on the source."""
    assert len(DECORATED) >= 10
    assert set(DECORATED) <= set(PLAIN_INIT)
    assert all(cls.__module__.startswith("engine.") for cls in DECORATED)
    for cls in DECORATED:
        assert ("__mypyc_attrs__" in vars(cls)) is compiled.COMPILED
        assert ("__init__" in vars(cls)) is compiled.COMPILED  # on the source, the twin's ``__new__``


def _reference(cls: type, *, frozen: bool = True) -> type[Any]:
    """A frozen dataclass of ``cls``'s fields with the ``__init__`` ``dataclasses`` writes (and the
    same qualified name, so its ``repr`` reads the same): what the written-out ``__init__`` must do."""
    ns: dict[str, Any] = {"__annotations__": {}, "__module__": cls.__module__}
    for f in dataclasses.fields(cls):
        ns["__annotations__"][f.name] = f.type
        ns[f.name] = field(
            default=f.default,
            default_factory=f.default_factory,
            init=f.init,
            repr=f.repr,
            hash=f.hash,
            compare=f.compare,
            kw_only=f.kw_only,
        )
    if "__post_init__" in vars(cls) and not compiled.COMPILED:
        ns["__post_init__"] = vars(cls)["__post_init__"]
    # (``slots=True`` as the classes are: a slotted dataclass's ``__init__`` also sets an ``init=False``
    # field that has a default, which a class attribute would otherwise stand in for)
    reference: type[Any] = dataclass(frozen=frozen, slots=True)(type(cls.__name__, (), ns))
    reference.__qualname__ = cls.__qualname__
    return reference


@dataclass(frozen=True)
class _V:
    """An argument: equal by its name, so copies and pickles compare; any type the field declares
    is stood in for (the classes' ``__post_init__`` only store their fields)."""

    name: str


def _arguments(cls: type, *, all_of_them: bool) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in list(inspect.signature(_reference(cls).__init__).parameters.values())[1:]:
        if p.default is not inspect.Parameter.empty and not all_of_them:
            continue
        value = _V(f"{cls.__name__}.{p.name}")
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return args, kwargs


def _plain(cls: type, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """What the dataclass's own ``__init__`` makes of these arguments (on the source)."""
    obj: Any = object.__new__(cls)
    _reference(cls).__init__(obj, *args, **kwargs)
    return obj


def _written(cls: type, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """The slots the class's written-out ``__init__`` sets (on the source: run on a plain object of
    the same slots, since on the class itself its stores meet the frozen ``__setattr__``)."""
    slots: tuple[str, ...] = vars(cls)["__slots__"]
    ns: dict[str, Any] = {"__slots__": slots}
    if "__post_init__" in vars(cls):
        ns["__post_init__"] = vars(cls)["__post_init__"]
    obj = type(f"{cls.__name__}Written", (), ns)()
    PLAIN_INIT[cls](obj, *args, **kwargs)
    return [getattr(obj, name, _UNSET) for name in slots]


def _slots(obj: Any) -> list[Any]:
    return [getattr(obj, name, _UNSET) for name in type(obj).__slots__]


def _assert_frozen(made: Any) -> None:
    """Every field refuses to be set or deleted."""
    for f in dataclasses.fields(made):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, f.name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(made, f.name)


@pytest.mark.parametrize("cls", CASES, ids=lambda c: c.__qualname__)
@pytest.mark.parametrize("all_of_them", [True, False], ids=["every-argument", "defaults"])
def test_a_twin_built_object_is_the_dataclass_s(cls: type, all_of_them: bool) -> None:
    args, kwargs = _arguments(cls, all_of_them=all_of_them)
    made, plain = cls(*args, **kwargs), _plain(cls, args, kwargs)
    assert type(made) is cls
    assert _slots(made) == _slots(plain)  # every slot, ``init=False`` ones included
    assert _written(cls, args, kwargs) == _slots(plain)  # what the compiled core runs
    assert made == plain
    assert repr(made) == repr(plain)
    if cls.__hash__ is not None:
        assert hash(made) == hash(plain)
    _assert_frozen(made)
    assert _slots(made) == _slots(plain)


@pytest.mark.parametrize("cls", CASES, ids=lambda c: c.__qualname__)
def test_a_twin_built_class_keeps_its_constructor_replace_and_copies(cls: type) -> None:
    plain_parameters = list(inspect.signature(_reference(cls).__init__).parameters.values())[1:]
    assert list(inspect.signature(cls).parameters.values()) == plain_parameters
    assert list(inspect.signature(PLAIN_INIT[cls]).parameters.values())[1:] == plain_parameters
    assert vars(cls)["__match_args__"] == tuple(
        p.name for p in plain_parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY
    )
    args, kwargs = _arguments(cls, all_of_them=True)
    made = cls(*args, **kwargs)
    first = dataclasses.fields(cls)[0].name
    changed = dataclasses.replace(made, **{first: _V("changed")})
    assert type(changed) is cls
    assert changed == dataclasses.replace(_plain(cls, args, kwargs), **{first: _V("changed")})
    assert getattr(changed, first) == _V("changed")
    assert changed != made
    for again in (copy.copy(made), copy.deepcopy(made), pickle.loads(pickle.dumps(made))):
        assert type(again) is cls
        assert again == made
        assert _slots(again) == _slots(made)
    with pytest.raises(TypeError):
        cls(*args, _V("one too many"), **kwargs)


def _alarm() -> ActiveAlarm:
    return ActiveAlarm(
        "ne-1|LOS", "ne-1", "LOS", "communicationsAlarm", None, "major", "outage", None, 10.5, 11.5
    )


def _typed(cls: type, name: str, annotation: str) -> Any:
    """A value of the field's declared type (its first choice; ``None`` where it may be ``None``)."""
    choices = [a.strip() for a in annotation.split(" | ")]
    if "None" in choices:
        return None
    first = choices[0]
    if first == "ActiveAlarm":
        return _alarm()
    if first == "CompiledRule":
        return CompiledRule("rs/r", "rs", None, "", 60.0, 0.0, 1)  # type: ignore[arg-type]
    if first.startswith("Literal["):
        return re.findall(r"[\"'](\w+)[\"']", first)[0]
    named = getattr(importlib.import_module(cls.__module__), first, None)
    if typing.get_origin(named) is Literal:  # an alias (``ChangeKind``, ``RecordEvent``)
        return typing.get_args(named)[0]
    if named in DECORATED:  # another such class (``IncidentRecord.root_cause``)
        declared = _declared(named)
        return named(
            **{f.name: _typed(named, f.name, declared[f.name]) for f in dataclasses.fields(named) if f.init}
        )
    scalars: dict[str, Any] = {"str": f"{cls.__name__}.{name}", "float": 1.5, "int": 3, "bool": True}
    if first in scalars:
        return scalars[first]
    for prefix, value in (("frozenset[", frozenset({"a/r#0"})), ("tuple[", ()), ("Mapping[", {"k": 1})):
        if first.startswith(prefix):
            return value
    raise AssertionError(f"{cls.__qualname__}.{name}: no value of type {annotation} written here")


def _declared(cls: type) -> dict[str, str]:
    """The fields' annotations as written (compiled, the class's own are evaluated, and lose a
    ``Literal`` or a union)."""
    tree = ast.parse((ROOT / (cls.__module__.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__]
    return {
        n.target.id: ast.unparse(n.annotation)
        for n in node.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }


def _hash(obj: Any) -> int | str:
    try:
        return hash(obj)
    except TypeError as e:  # a field that cannot be hashed (an ``ActiveAlarm``): the same error
        return str(e)


def _fields(obj: Any) -> list[Any]:
    return [getattr(obj, f.name, _UNSET) for f in dataclasses.fields(obj)]


@pytest.mark.parametrize("cls", DECORATED, ids=lambda c: c.__qualname__)
def test_a_twin_built_class_with_arguments_of_the_declared_types(cls: type) -> None:
    """On the core that runs: the class's own constructor (compiled, or through the twin) against
    ``dataclasses``'s, writes refused, ``replace``, copies and pickles."""
    declared = _declared(cls)
    kwargs = {f.name: _typed(cls, f.name, declared[f.name]) for f in dataclasses.fields(cls) if f.init}
    made: Any = cls(**kwargs)
    reference = _reference(cls)(**kwargs)
    assert type(made) is cls
    assert _fields(made)[: len(kwargs)] == _fields(reference)[: len(kwargs)]
    assert all(value is not _UNSET for value in _fields(made))  # ``init=False`` ones too
    assert repr(made) == repr(reference)
    assert made == cls(**kwargs)
    assert _hash(made) == _hash(reference)
    _assert_frozen(made)
    assert _fields(made)[: len(kwargs)] == _fields(reference)[: len(kwargs)]
    for again in (copy.copy(made), copy.deepcopy(made), pickle.loads(pickle.dumps(made))):
        assert type(again) is cls
        assert again == made
    first = dataclasses.fields(cls)[0].name
    assert dataclasses.replace(cls(**kwargs), **{first: kwargs[first]}) == made


def test_decisions_written_out_init_is_the_dataclass_s() -> None:
    """``Decisions`` (not frozen) writes its ``__init__`` out too, so that mypyc compiles it: ``None``
    for a list not given, where ``dataclasses`` has its factory marker."""
    reference = _reference(Decisions, frozen=False)
    names = [f.name for f in dataclasses.fields(Decisions)]
    assert list(inspect.signature(Decisions).parameters) == names
    assert list(inspect.signature(reference).parameters) == names
    assert _fields(Decisions()) == _fields(reference()) == [[], [], [], [], None]
    assert Decisions().records is not Decisions().records
    given: list[Any] = [[1], [2], [3], [4]]
    made = Decisions(given[0], given[1], given[2], given[3], message=None)
    assert _fields(made) == _fields(reference(*given, message=None))
    assert all(a is b for a, b in zip(_fields(made)[:4], given, strict=True))
    assert repr(made) == repr(reference(*given))
    assert made == Decisions(*copy.deepcopy(given))


# -- the mechanism on a class with every kind of field --------------------------------------------


def _every_kind() -> tuple[type[Any], type[Any]]:
    """The same class twice: made as written, and through ``@twin_built``."""

    def made(decorate: bool) -> type[Any]:
        @dataclass(frozen=True, slots=True, order=True)
        class Every:
            a: int
            b: str = "b"
            c: tuple[int, ...] = field(default_factory=tuple)
            _: KW_ONLY
            k: int = 3
            m: list[int] = field(default_factory=list, compare=False)
            d: int = field(init=False, default=9)
            f: list[int] = field(init=False, default_factory=lambda: [1])
            p: int = field(init=False)
            unset: int = field(init=False, repr=False, compare=False)

            def __post_init__(self) -> None:
                assert type(self) is Every  # it runs on the frozen object, as the dataclass's
                object.__setattr__(self, "p", self.a * 2)

        return twin_built(Every) if decorate else Every

    return made(True), made(False)


def test_every_kind_of_field_is_made_as_the_dataclass_makes_it() -> None:
    fast, slow = _every_kind()
    for args, kwargs in [((1,), {}), ((1, "x", (2,)), {"k": 4, "m": [5]})]:
        a, b = fast(*args, **kwargs), slow(*args, **kwargs)
        assert repr(a) == repr(b).replace(slow.__qualname__, fast.__qualname__)
        assert _slots(a) == _slots(b)
        assert not hasattr(a, "unset")  # ``init=False`` without a default: left unset, as there
    assert fast(1).m is not fast(1).m  # a factory called per object
    assert fast(1) < fast(2)
    assert inspect.signature(fast).parameters == inspect.signature(slow).parameters
    with pytest.raises(TypeError, match="missing 1 required"):
        fast()
    with pytest.raises(TypeError):
        fast(1, k=2, z=3)


def test_a_field_added_later_is_stored() -> None:
    """The constructor is generated from the fields: a class grown by a field sets it too."""

    @twin_built
    @dataclass(frozen=True, slots=True)
    class Grown:
        a: int
        added: str = "later"

    assert Grown(1).added == "later"
    assert Grown(1, "now") == Grown(1, added="now")


def test_what_the_decorator_refuses() -> None:
    @dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: InitVar[int]

        def __post_init__(self, b: int) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class Base:
        a: int

    @dataclass(frozen=True, slots=True)
    class Derived(Base):
        b: int

    for cls in (NotFrozen, NoSlots, WithInitVar, Derived):
        with pytest.raises(TypeError):
            twin_built(cls)

    made = twin_built(Base)
    with pytest.raises(TypeError, match="cannot be subclassed"):

        class Sub(made):  # type: ignore[valid-type,misc]
            pass


def test_a_twin_is_the_frozen_class_s_layout() -> None:
    fast, _ = _every_kind()
    twin = twin_of(fast)
    assert twin_of(fast) is twin  # made once
    obj = twin()
    obj.a = 1  # a plain store
    obj.__class__ = fast
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.a = 2
