"""results.json's field types (JSON's scalar types, rounding, list messages) and its validation errors as InputError."""

from __future__ import annotations

import dataclasses
import json
import re
import types
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import numpy as np
from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from mmw.errors import InputError
from mmw.processing.captions import NEURAL_CAPTIONS_DOC

SCHEMA_VERSION = "1.2"

TEMPLATE_NOTE = (f"template captions: no captioning model is configured (models.caption.model); "
                 f"see {NEURAL_CAPTIONS_DOC}")

_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# An indented list of numbers; the newline after "[" cannot occur inside a JSON string.
_NUMBER_LIST = re.compile(rf"\[\n\s*({_NUMBER}(?:,\n\s*{_NUMBER})*)\n\s*\]")

# Decimals kept in results.json: pixels, scores, seconds.
_BOX_DECIMALS = 2
_SCORE_DECIMALS = 4
_TIME_DECIMALS = 3

#: Validation context key: the data is a results file (see ``_Record._file_layout``).
_FILE = "results_file"


# --- field types: JSON's scalar types (numpy scalars are taken as Python ones), rounding, list messages ----


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


Int = Annotated[int, Strict(), BeforeValidator(_plain)]  # Strict and constraints first: the JSON Schema shows them
Float = Annotated[float, Strict(), BeforeValidator(_plain)]  # an int is a number too
Bool = Annotated[bool, Strict(), BeforeValidator(_plain)]
Str = Annotated[str, Strict()]


def _rounded(decimals: int) -> PlainSerializer:
    return PlainSerializer(lambda v: round(float(v), decimals), return_type=float)


def _list_of(what: str, error: str) -> WrapValidator:
    """A list with a bad item is reported whole (``expected <what>, got [...]``); a non-list as a non-list."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            if not isinstance(value, (list, tuple)):
                raise
            got = _short(value)
            raise PydanticCustomError(error, "expected {what}, got {got}", {"what": what, "got": got}) from None

    return WrapValidator(check)


Score = Annotated[Float, _rounded(_SCORE_DECIMALS), Field(description="probability in [0, 1], rounded to 4 decimals")]
Seconds = Annotated[Float, _rounded(_TIME_DECIMALS), Field(description="seconds, rounded to 0.001")]
Box = Annotated[
    tuple[Float, Float, Float, Float],
    _list_of("4 numbers [x1, y1, x2, y2]", "box"),
    PlainSerializer(lambda box: [round(float(v), _BOX_DECIMALS) for v in box], return_type=list[float]),
    Field(description="[x1, y1, x2, y2] in pixels of the analysed image, origin top left; rounded to 0.01"),
]
TokenIds = Annotated[
    tuple[Annotated[int, Strict(), Field(ge=0), BeforeValidator(_plain)], ...],
    _list_of("a list of token ids (integers >= 0)", "token_ids"),
    Field(description="the captioner's token ids, no padding"),
]
ClassNames = Annotated[tuple[Str, ...], _list_of("a list of class names", "class_names")]

_OWN_MESSAGES = {"box", "token_ids", "class_names", "box_index"}  # PydanticCustomError types with a full message



# --- reading: pydantic's errors as InputError ------------------------------------------------------------

_TYPE_ERRORS = {"int_type", "float_type", "bool_type", "string_type", "dict_type", "tuple_type", "list_type",
                "dataclass_type", "model_type"}
_NAMES: dict[Any, str] = {int: "int", float: "a number", bool: "bool", str: "str", dict: "dict", tuple: "list",
                          list: "list"}


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _adapter(cls: type) -> TypeAdapter[Any]:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def _fields(cls: type) -> dict[str, FieldInfo]:
    """A pydantic dataclass's fields, annotations resolved."""
    return getattr(cls, "__pydantic_fields__", {})  # type: ignore[no-any-return]


_T = TypeVar("_T")


def _validate(cls: type[_T], data: Any, where: str) -> _T:
    """``cls`` from decoded JSON, read as a file (``_FILE`` context); InputError names the first bad field."""
    try:
        return _adapter(cls).validate_python(data, context={_FILE: True})  # type: ignore[no-any-return]
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise InputError(_message(cls, errors[0], where) + more) from exc


def _message(root: type, error: Any, where: str) -> str:
    """``<where>.frames[3].detections[0].box: <what was expected>, got <what>`` for one pydantic error."""
    loc = (*error["loc"], *error.get("ctx", {}).get("loc", ()))
    path = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc if p != "image")  # flat
    kind = error["type"]
    if kind in _OWN_MESSAGES:
        return f"{path}: {error['msg']}"
    if kind == "missing":
        return f"{path}: missing (expected {_expected(root, loc)})"
    if kind in _TYPE_ERRORS:
        value = error["input"]
        got = "null" if value is None else f"{type(value).__name__} {_short(value)}"
        return f"{path}: expected {_expected(root, loc)}, got {got}"
    return f"{path}: {error['msg']}, got {_short(error['input'])}"


def _expected(root: type, loc: tuple[Any, ...]) -> str:
    """What the field at the pydantic error location ``loc`` under ``root`` holds, in words."""
    tp: Any = root
    for part in loc:
        tp = _bare(tp)
        if isinstance(part, int):
            tp = (get_args(tp) or (Any,))[0]
        elif part in _fields(tp):
            tp = _fields(tp)[part].annotation
        else:
            return "a valid value"
    base = _bare(tp)
    name = _NAMES.get(get_origin(base) or base) or ("a JSON object" if dataclasses.is_dataclass(base) else "a value")
    return f"{'a string' if name == 'str' else name} or null" if _nullable(tp) else name


def _bare(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and ``| None``."""
    if get_origin(tp) is Annotated:
        return _bare(get_args(tp)[0])
    if _nullable(tp):
        return _bare(next(a for a in get_args(tp) if a is not type(None)))
    return tp


def _nullable(tp: Any) -> bool:
    if get_origin(tp) is Annotated:
        return _nullable(get_args(tp)[0])
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mapping(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"results file {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"results file {path}: cannot be read ({exc})") from None


