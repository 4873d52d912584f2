"""``@twin_built`` (engine/model/twins.py): a frozen dataclass made through an unfrozen twin is the
object the dataclass's own ``__init__`` makes, for every class that carries the decorator.

Every module of the engine that writes ``@twin_built`` is imported and each decorated class checked
against the ``__init__`` it replaced (``PLAIN_INIT``): every slot set alike, with every argument given
and with only the required ones (defaults and factories), ``==``, ``hash``, ``repr``, the signature,
``replace``, copies and pickles, and writes refused with ``FrozenInstanceError``. The constructor is
generated from the dataclass's fields, so a field added later is stored too; the test would see one
left unset as a slot the dataclass sets and the twin does not."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import re
from dataclasses import KW_ONLY, InitVar, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.model.twins import PLAIN_INIT, twin_built, twin_of

ROOT = Path(__file__).resolve().parents[1]
_UNSET = object()


def _decorated() -> list[type]:
    """Every class of the engine written with ``@twin_built``, found by reading the sources."""
    found: list[type] = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        names = re.findall(r"^@twin_built\n(?:@.*\n)*class (\w+)", text, flags=re.MULTILINE)
        if not names:
            continue
        assert text.count("\n@twin_built\n") == len(names), path  # each above a class's decorators
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        found += [getattr(module, name) for name in names]
    return found


DECORATED = _decorated()
# A class whose ``__post_init__`` reads its fields takes ``_V`` placeholders, not the declared types:
# compiled by mypyc (``engine.compiled``), that method checks them; these cases run on the source.
CASES = [
    pytest.param(cls, marks=pytest.mark.source_only) if "__post_init__" in cls.__dict__ else cls
    for cls in DECORATED
]


def test_the_decorated_classes_are_found() -> None:
    """The sources' decorated classes are the ones the decorator saw (imported with the engine)."""
    assert len(DECORATED) >= 10
    assert set(DECORATED) <= set(PLAIN_INIT)
    assert all(cls.__module__.startswith("engine.") for cls in DECORATED)


@dataclass(frozen=True)
class _V:
    """An argument: equal by its name, so copies and pickles compare; any type the field declares
    is stood in for (the classes' ``__post_init__`` only store their fields)."""

    name: str


def _arguments(cls: type, *, all_of_them: bool) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in list(inspect.signature(PLAIN_INIT[cls]).parameters.values())[1:]:
        if p.default is not inspect.Parameter.empty and not all_of_them:
            continue
        value = _V(f"{cls.__name__}.{p.name}")
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return args, kwargs


def _plain(cls: type, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """What the dataclass's own ``__init__`` makes of these arguments."""
    obj: Any = object.__new__(cls)
    PLAIN_INIT[cls](obj, *args, **kwargs)
    return obj


def _slots(obj: Any) -> list[Any]:
    return [getattr(obj, name, _UNSET) for name in type(obj).__slots__]


@pytest.mark.parametrize("cls", CASES, ids=lambda c: c.__qualname__)
@pytest.mark.parametrize("all_of_them", [True, False], ids=["every-argument", "defaults"])
def test_a_twin_built_object_is_the_dataclass_s(cls: type, all_of_them: bool) -> None:
    args, kwargs = _arguments(cls, all_of_them=all_of_them)
    made, plain = cls(*args, **kwargs), _plain(cls, args, kwargs)
    assert type(made) is cls
    assert _slots(made) == _slots(plain)  # every slot, ``init=False`` ones included
    assert made == plain
    assert repr(made) == repr(plain)
    if cls.__hash__ is not None:
        assert hash(made) == hash(plain)
    for f in dataclasses.fields(cls):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, f.name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(made, f.name)
    assert _slots(made) == _slots(plain)


@pytest.mark.parametrize("cls", CASES, ids=lambda c: c.__qualname__)
def test_a_twin_built_class_keeps_its_constructor_replace_and_copies(cls: type) -> None:
    plain_parameters = list(inspect.signature(PLAIN_INIT[cls]).parameters.values())[1:]
    assert list(inspect.signature(cls).parameters.values()) == plain_parameters
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
