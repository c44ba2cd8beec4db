"""How Python data stands in for Go values while a template runs.

Plain data maps directly: dict is map[string]any (missing keys, sorted ranging), list/tuple are
[]any, str/int/float/bool are themselves, bytes is []byte, None is a nil interface. MISSING is
Go's invalid reflect.Value ("<no value>"). Callers that need Go's typed values (structs whose
missing fields are errors, named types with a String() method, nil slices) use GoStruct, GoSlice
and GoMap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final


class _Missing:
    """Go's invalid reflect.Value: what a missing map key or an unset variable evaluates to."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class GoSlice(list[Any]):
    """A named Go slice type: `nil` marks a nil slice, `string` is its String() method if it has one."""

    def __init__(self, items: Iterable[Any] = (), *, type_name: str = "[]interface {}", nil: bool = False,
                 string: Callable[[GoSlice], str] | None = None,
                 marshal: Callable[[GoSlice], Any] | None = None) -> None:
        super().__init__(items)
        self.type_name = type_name
        self.nil = nil and not self
        self.string = string
        self.marshal = marshal  # MarshalJSON: returns the plain value to encode instead

    def derive(self, items: Iterable[Any]) -> GoSlice:
        """A slice of the same type (what Go's slice function returns)."""
        return GoSlice(items, type_name=self.type_name, string=self.string, marshal=self.marshal)


class GoMap(dict[str, Any]):
    """A named Go map type; `ordered` marshals keys in insertion order (an ordered map) instead of sorted."""

    def __init__(self, items: Mapping[str, Any] | None = None, *, type_name: str = "map[string]interface {}",
                 nil: bool = False, ordered: bool = False,
                 string: Callable[[GoMap], str] | None = None) -> None:
        super().__init__(items or {})
        self.type_name = type_name
        self.nil = nil and not self
        self.ordered = ordered
        self.string = string


class GoStruct:
    """A Go struct: fixed fields (a missing one is an error), always true, json by field tags."""

    __slots__ = ("fields", "pointer", "string", "tags", "type_name")

    def __init__(self, type_name: str, fields: Mapping[str, Any], *,
                 tags: Mapping[str, tuple[str, str]] | None = None, pointer: bool = False,
                 string: Callable[[GoStruct], str] | None = None) -> None:
        self.type_name = type_name
        self.fields = dict(fields)
        self.tags = dict(tags or {})  # field → (json name or "-", "" | "omitempty" | "omitnil")
        self.pointer = pointer  # a *T: prints as &{...}
        self.string = string

    def __repr__(self) -> str:
        return f"GoStruct({self.type_name!r}, {self.fields!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoStruct) and (self.type_name, self.fields) == (other.type_name, other.fields)

    __hash__ = None  # type: ignore[assignment]


def is_nil(v: Any) -> bool:
    return v is None or v is MISSING


def truth(v: Any) -> bool:
    """Go's template truth: false, 0, nil and empty strings, slices and maps are false; structs are true."""
    if v is None or v is MISSING:
        return False
    if isinstance(v, (bool, int, float)):
        return bool(v)
    if isinstance(v, GoStruct):
        return True
    if isinstance(v, (str, bytes, list, tuple, dict)):
        return len(v) > 0
    return True


def type_name(v: Any) -> str:
    """The Go type a value stands for, for error messages."""
    if v is None or v is MISSING:
        return "interface {}"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bytes):
        return "[]uint8"
    if isinstance(v, (GoSlice, GoMap)):
        return v.type_name
    if isinstance(v, GoStruct):
        return ("*" if v.pointer else "") + v.type_name
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


def sorted_items(m: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """Map entries in the order Go's fmt and range use: by key."""
    try:
        return sorted(m.items(), key=lambda kv: kv[0])
    except TypeError:  # mixed key types cannot happen in Go; keep the result deterministic anyway
        return sorted(m.items(), key=lambda kv: (type(kv[0]).__name__, str(kv[0])))


def as_items(v: Any) -> list[Any] | None:
    """The elements of anything Go would treat as a slice, else None."""
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, bytes):
        return list(v)
    return None
