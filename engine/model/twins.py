"""Frozen dataclasses made without a call per field: an unfrozen twin class, filled, then made frozen.

A frozen dataclass refuses every write by its ``__setattr__``, so its generated ``__init__`` sets each
field through ``object.__setattr__``: about 1,280 instructions a field on CPython 3.11, where a plain
store into a slot costs a few dozen. The replay makes about about ninety thousand such objects per
30,000 events (``Explanation``, ``_Candidate``, ``AlarmChange``, ...), so that call was several
per cent of everything it did.

``twin_of(cls)`` is a class with ``cls``'s slots and no ``__setattr__`` of its own: an instance of it
is filled by plain attribute stores (CPython's specialised slot store, no call), then becomes a
``cls`` by assigning its ``__class__``, which Python allows between two classes of the same layout
(the same base and the same slots). The result is the object the dataclass's ``__init__`` makes:
type ``cls``, every field set, frozen from then on.

``@twin_built``, written above ``@dataclass(frozen=True, slots=True)``, gives the class a
constructor that does exactly that: a ``__new__`` generated from the dataclass's fields with the
``__init__``'s very signature (names, order, defaults, keyword-only markers; checked against it when
the class is made), which makes a twin, stores each field (``default_factory`` called as the
dataclass does, an ``init=False`` field given its default), turns it into the class, then runs
``__post_init__`` if the class has one, on the frozen object as the dataclass does. The dataclass's
``__init__`` is removed (``object.__init__`` then accepts the arguments ``__new__`` took). Everything
else is the dataclass's own: ``==``, ``hash``, ``repr``, ordering, ``__match_args__``,
``dataclasses.replace`` (it calls the class), ``fields``, the refusal of writes
(``FrozenInstanceError``), and what mypy sees (a frozen dataclass with its typed constructor).
Copies and pickles go through ``__getnewargs_ex__`` (the init fields by name): a class with a
``__new__`` that takes arguments cannot be made from nothing, as ``copy`` and ``pickle`` otherwise do.

Measured (callgrind, 100,000 objects each): a five-field class called with one argument by keyword,
the dataclass's ``__init__`` 10,160 instructions an object, ``@twin_built`` 4,960, an unfrozen slots
dataclass 3,770; by position, one field 3,320 → 3,030, two 4,640 → 3,140, three 5,960 → 3,310. The
twin's own cost (``__new__`` looked up on the class, the twin made, the ``__class__`` assignment) is
about that of one ``object.__setattr__``. Tried: an ``__init__`` that moves ``self`` to the twin and
back (``object.__setattr__(self, "__class__", twin)`` first, since the frozen ``__setattr__`` refuses
it), 5,620; one that sets each slot through its descriptor's ``__set__``, 6,730; a ``__new__`` that is
the twin class itself, its ``__init__`` taking the class first, 5,085.

A decorated class cannot be subclassed (its ``__new__`` makes its own twin); ``InitVar`` fields are
not supported (the signature check refuses the class).

**The compiled core.** mypyc makes a class with a decorator it does not know a plain Python class,
so the engine's classes are not decorated: each writes the dataclass's ``__init__`` out (the same
parameters, one store per field, each ``# type: ignore[misc]``: the one place a frozen field is
assigned; ``__post_init__`` called last if there is one) and is given to ``twin_built`` by a call
below the class, ``twin_built(Name)``. On the source that call does the above (the generated
``__new__`` takes the written-out ``__init__``'s signature, and that ``__init__`` is removed). On the
compiled core the class is native (``__mypyc_attrs__``), and ``twin_built`` leaves it to its own
``__init__``, compiled: each field stored into the object's struct, about a tenth of the twin's
cost, and read back natively by the compiled callers. Its writes from the interpreter still meet the
dataclass's frozen ``__setattr__`` (``FrozenInstanceError``), mypy refuses them in the sources, and
``==``, ``hash``, ``repr``, ``replace`` are the dataclass's; copies and pickles call the class with
the init fields by name (``__reduce__``: a native class has neither slots nor a ``__dict__`` to copy).
``tests/test_twins.py`` checks every such class against the ``__init__`` ``dataclasses`` writes for
its fields, the written-out one included (run on the source on a plain object of the same slots),
and on the compiled core with arguments of the declared types. ``PLAIN_INIT`` keeps the
written-out ``__init__`` (or, decorated, the dataclass's) that each class's constructor replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

C = TypeVar("C", bound=type)

_TWINS: dict[type, type] = {}
PLAIN_INIT: dict[type, Callable[..., None]] = {}
"""Each class given to ``twin_built`` -> the ``__init__`` its constructor replaced (for the tests)."""


def twin_of(cls: type) -> type[Any]:
    """The unfrozen class of ``cls``'s layout (made once): fill an instance with plain stores, then
    assign ``cls`` to its ``__class__``. Every field of ``cls`` must be stored: a slot left unset is
    an ``AttributeError`` at its first read (``@twin_built`` classes store them all; code that fills a
    twin by hand has its test compare with the dataclass's constructor)."""
    twin = _TWINS.get(cls)
    if twin is None:
        params = getattr(cls, "__dataclass_params__", None)
        slots = cls.__dict__.get("__slots__")
        if params is None or not params.frozen or slots is None or cls.__bases__ != (object,):
            raise TypeError(f"{cls.__qualname__}: not a frozen dataclass with slots=True and no base")
        # the same base (object) and the same slots: ``__class__`` may be assigned between the two
        twin = type(f"{cls.__name__}Twin", (), {"__slots__": slots, "__module__": cls.__module__})
        twin.__qualname__ = f"twin_of({cls.__qualname__})"
        _TWINS[cls] = twin
    return twin


def twin_built(cls: C) -> C:
    """Make ``cls`` (a frozen dataclass with ``slots=True``) through its twin: see the module. A class
    compiled by mypyc (a native class) is left to its own ``__init__``: see the module."""
    if "__mypyc_attrs__" in cls.__dict__:
        # native: its explicit ``__init__`` is compiled and stores each field into the object's
        # struct; writes from the interpreter still meet the dataclass's frozen ``__setattr__``
        PLAIN_INIT[cls] = cls.__dict__["__init__"]
        setattr(cls, "__reduce__", _remade_by_name)  # noqa: B010 - (mypy: assigning a method)
        return cls
    twin = twin_of(cls)
    plain_init = cls.__dict__["__init__"]
    new = _generated_new(cls, twin, plain_init)
    PLAIN_INIT[cls] = plain_init
    setattr(cls, "__new__", staticmethod(new))  # noqa: B010 - (mypy: assigning a method)
    # object's ``__init__`` then: it accepts the arguments when the class's ``__new__`` is not object's
    delattr(cls, "__init__")
    setattr(cls, "__getnewargs_ex__", _init_fields_by_name)  # noqa: B010
    setattr(cls, "__init_subclass__", classmethod(_refuse_subclass))  # noqa: B010
    return cls


def _generated_new(cls: type, twin: type, plain_init: Callable[..., None]) -> Callable[..., Any]:
    """``__new__(cls, <the dataclass __init__'s parameters>)``: a twin filled, made a ``cls``."""
    ns: dict[str, Any] = {"_twin": twin}
    plain = _parameters(plain_init)
    defaults = dict(zip(reversed(plain[0][: plain[1]]), reversed(plain[2] or ()), strict=False))
    defaults.update(plain[3] or {})
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        name = f.name
        if name.startswith("__"):
            raise TypeError(f"{cls.__qualname__}.{name}: a field name the generated code could shadow")
        if f.init:
            value = name
            if name in defaults:
                # the dataclass's own default object: ``default``, or its "call the factory" marker
                ns[f"_default_{name}"] = defaults[name]
                text = f"{name}=_default_{name}"
                if f.default_factory is not dataclasses.MISSING:
                    ns[f"_factory_{name}"] = f.default_factory
                    value = f"_factory_{name}() if {name} is _default_{name} else {name}"
            else:
                text = name
            (keyword if f.kw_only else positional).append(text)
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"_factory_{name}"] = f.default_factory
            value = f"_factory_{name}()"
        elif f.default is not dataclasses.MISSING:
            ns[f"_default_{name}"] = f.default
            value = f"_default_{name}"
        else:
            continue  # ``init=False`` and no default: the dataclass leaves it unset too
        body.append(f"    __obj.{name} = {value}")
    params = ", ".join(["__cls", *positional, *(["*", *keyword] if keyword else [])])
    post = ["    __obj.__post_init__()"] if hasattr(cls, "__post_init__") else []
    source = "\n".join(
        [
            f"def __new__({params}):",
            "    __obj = _twin()",
            *body,
            "    __obj.__class__ = __cls",  # from here on a frozen ``cls``
            *post,
            "    return __obj",
        ]
    )
    exec(source, ns)  # (code made of the dataclass's field names)
    new: Callable[..., Any] = ns["__new__"]
    new.__qualname__ = f"{cls.__qualname__}.__new__"
    new.__module__ = cls.__module__
    new.__annotations__ = {k: v for k, v in plain_init.__annotations__.items() if k != "return"}
    new.__doc__ = f"``{cls.__qualname__}(...)`` made through its twin (``engine.model.twins``)."
    if _parameters(new) != plain:  # (an ``InitVar``, or anything else this module does not model)
        raise TypeError(f"{cls.__qualname__}: the generated constructor's signature is not the dataclass's")
    return new


def _parameters(fn: Any) -> tuple[tuple[str, ...], int, tuple[Any, ...] | None, dict[str, Any] | None]:
    """A function's parameters after the first (names, how many positional), its defaults (the same
    objects) and keyword-only defaults: what ``inspect.signature`` compares, at a fifth of its cost
    when the class is made."""
    code = fn.__code__
    names = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
    return names, code.co_argcount - 1, fn.__defaults__, fn.__kwdefaults__


def _init_fields_by_name(self: Any) -> tuple[tuple[()], dict[str, Any]]:
    """For ``copy`` and ``pickle``: the object is made again from its init fields, by name (then the
    dataclass's ``__setstate__`` sets every field as it was)."""
    return (), {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}


def _remade_by_name(self: Any) -> tuple[Callable[..., Any], tuple[type, dict[str, Any]]]:
    """For ``copy`` and ``pickle`` of a native class (which has neither a ``__dict__`` nor slots for
    the default reduction): made again by calling the class with its init fields, by name."""
    return _remake, (type(self), _init_fields_by_name(self)[1])


def _remake(cls: type[Any], fields: dict[str, Any]) -> Any:
    return cls(**fields)


def _refuse_subclass(cls: type, /, **kwargs: Any) -> None:
    raise TypeError(f"{cls.__qualname__}: its base was made by @twin_built, which cannot be subclassed")
