"""Console forms: what a browser posts, read into the types the service's schema takes.

Browsers send every field as text, and the schemas behind the services take JSON types strictly (the
API refuses "50" where an integer is expected), so every console form goes through `read_form`: it
converts each field by the type its schema declares (never by pydantic's lax coercion), treats a blank
field as not given, keeps what the user typed for the re-rendered form, and names the field at fault.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, ValidationError

from raptorflow.kit.errors import RaptorFlowError

M = TypeVar("M", bound=BaseModel)
TRUE = frozenset({"1", "on", "true", "yes"})
FALSE = frozenset({"0", "off", "false", "no"})
_SPLIT = re.compile(r"[,\n]")
_INTEGER = re.compile(r"[+-]?\d{1,18}")


class FormInvalid(RaptorFlowError):
    """Fields of a console form that could not be read or broke the schema, by form field name."""

    status = 422
    title = "Unprocessable Content"
    type_slug = "validation-error"

    def __init__(self, errors: dict[str, str]) -> None:
        detail = "; ".join(f"{name}: {message}" for name, message in errors.items())
        super().__init__(detail, errors=[{"field": k, "message": v} for k, v in errors.items()])


@dataclass(frozen=True)
class Control:
    """One control of a form drawn by the `field` macro: the schema field it fills, its label, its widget
    (text, textarea, list, select, date, number, checkbox) and, for selects, (value, label) options."""

    name: str
    label: str
    widget: str = "text"
    options: Sequence[tuple[str, str]] = ()
    required: bool = False
    blank: bool = True  # a select offers "—" (not given / cleared)
    step: str = "1"
    minimum: int | None = None
    maximum: int | None = None


def choices(values: Collection[str]) -> tuple[tuple[str, str], ...]:
    """Select options whose label is their value."""
    return tuple((v, v) for v in values)


def read_controls(
    form: Any, model: type[BaseModel], controls: Sequence[Control], *, edit: bool = False
) -> FormData:
    """`read_form` for a form drawn from Control specs (textareas are kept as typed)."""
    return read_form(
        form,
        model,
        [c.name for c in controls],
        edit=edit,
        text={c.name for c in controls if c.widget == "textarea"},
    )


@dataclass
class FormData:
    """A submitted form: typed values for the schema, what the user typed, fields that could not be read."""

    values: dict[str, Any] = field(default_factory=dict)
    shown: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    prefix: str = ""

    def nest(self, name: str, inner: FormData) -> FormData:
        """Put another schema's fields (read from the same form) under `name`, e.g. a filter object."""
        self.values[name] = inner.values
        self.shown.update({inner.prefix + k: v for k, v in inner.shown.items()})
        self.errors.update(inner.errors)
        return self

    def changed_from(self, current: dict[str, Any]) -> FormData:
        """Keep only the fields the user changed from the values the edit form showed (PATCH what moved:
        a date shown without its time, left alone, must not reset the time)."""
        for name, before in current.items():
            if name in self.values and self.shown.get(self.prefix + name) == before:
                del self.values[name]
        return self

    def build(self, model: type[M]) -> M:
        """The schema's instance; FormInvalid naming every field that could not be read or was refused."""
        if self.errors:
            raise FormInvalid(self.errors)
        try:
            return model.model_validate(self.values)
        except ValidationError as exc:
            raise FormInvalid(self._named(exc)) from None

    def _named(self, exc: ValidationError) -> dict[str, str]:
        out: dict[str, str] = {}
        for err in exc.errors():
            names = [str(p) for p in err["loc"] if isinstance(p, str)]
            # A nested schema's error (filter.min_score) belongs to the form field it came from.
            inner = [n for n in reversed(names) if self.prefix + n in self.shown]
            name = self.prefix + (inner[0] if inner else names[0]) if names else "form"
            out.setdefault(name, err["msg"].removeprefix("Value error, "))
        return out


def read_form(
    form: Any,
    model: type[BaseModel],
    fields: Sequence[str],
    *,
    edit: bool = False,
    many: Collection[str] = (),
    text: Collection[str] = (),
    prefix: str = "",
) -> FormData:
    """Read `fields` of `model` from a submitted form (control names: prefix + field name).

    A blank field is not given on a create form; on an edit form it clears the value (None, an empty
    list, or an empty string for `text` fields: multi-line text kept as typed). An unchecked checkbox is
    false. `many` are checkbox groups or multi-selects (one control per value); other list fields are
    one input of comma- or newline-separated items.
    """
    out = FormData(prefix=prefix)
    for name in fields:
        info = model.model_fields.get(name)
        if info is None:
            raise KeyError(f"{model.__name__} has no field {name!r}")
        control = prefix + name
        kind, item = _kind(info.annotation)
        # Browsers send a textarea's line breaks as CRLF (HTML form encoding); the services store LF.
        raw = [v.replace("\r\n", "\n") for v in form.getlist(control) if isinstance(v, str)]
        try:
            if kind == "list":
                _read_list(out, name, raw, item, edit=edit, many=name in many)
            elif kind == "bool":
                _read_bool(out, name, raw, edit=edit)
            else:
                typed = raw[-1] if name in text and raw else (raw[-1].strip() if raw else "")
                out.shown[control] = typed
                if typed.strip() == "":
                    if edit:
                        out.values[name] = "" if name in text or _needs_text(info.metadata) else None
                    continue
                out.values[name] = _convert(kind, item, typed.strip())
        except ValueError as exc:
            out.errors[control] = str(exc)
    return out


def shown_values(obj: Any, fields: Sequence[str], *, many: Collection[str] = ()) -> dict[str, Any]:
    """An object's current values as its edit form shows them (and as `FormData.changed_from` compares)."""

    def get(name: str) -> Any:
        return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)

    return {name: show(get(name), many=name in many) for name in fields}


def show(value: Any, *, many: bool = False) -> Any:
    """One value as a form control shows it: lists joined by commas, dates as YYYY-MM-DD, '' for none."""
    if value is None:
        return [] if many else ""
    if isinstance(value, bool):
        return value
    if isinstance(value, list | tuple):
        items = [show(v) for v in value]
        return items if many else ", ".join(items)
    if isinstance(value, datetime):
        return value.astimezone(UTC).date().isoformat() if value.tzinfo else value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _read_list(out: FormData, name: str, raw: list[str], item: Any, *, edit: bool, many: bool) -> None:
    control = out.prefix + name
    out.shown[control] = raw if many else (raw[-1].strip() if raw else "")
    parts = [p.strip() for entry in raw for p in (_SPLIT.split(entry) if not many else [entry])]
    parts = [p for p in parts if p]
    if not parts:
        if edit:
            out.values[name] = []
        return
    kind, inner = _kind(item)
    if kind in ("list", "bool", "model"):
        raise TypeError(f"a form list of {item!r} is not supported")
    converted = []
    for part in parts:
        try:
            converted.append(_convert(kind, inner, part))
        except ValueError as exc:
            raise ValueError(f"“{part}”: {exc}") from None
    out.values[name] = converted


def _read_bool(out: FormData, name: str, raw: list[str], *, edit: bool) -> None:
    control = out.prefix + name
    if not raw:  # an unchecked checkbox sends nothing
        out.shown[control] = False
        out.values[name] = False
        return
    typed = raw[-1].strip().lower()
    if typed == "":  # a yes/no select left on its blank option
        out.shown[control] = ""
        if edit:
            out.values[name] = None
        return
    if typed not in TRUE | FALSE:
        out.shown[control] = raw[-1]
        raise ValueError("expected a checked or unchecked box (yes or no)")
    out.shown[control] = typed in TRUE
    out.values[name] = typed in TRUE


def _needs_text(metadata: list[Any]) -> bool:
    # A blank required text field on an edit form goes to the schema as "" so it says what is missing.
    return any((getattr(m, "min_length", None) or 0) > 0 for m in metadata)


def _leaves(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Annotated:
        return _leaves(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [leaf for arg in get_args(annotation) if arg is not type(None) for leaf in _leaves(arg)]
    return [annotation]


def _kind(annotation: Any) -> tuple[str, Any]:
    """What a schema field takes: (kind, detail) — the item type of a list, the choices of an enum."""
    leaves = _leaves(annotation)
    if len(leaves) != 1:
        return "str", None
    leaf = leaves[0]
    origin = get_origin(leaf)
    if origin in (list, tuple, set, frozenset):
        args = get_args(leaf)
        return "list", args[0] if args else str
    if origin is Literal:
        return "choice", tuple(str(a) for a in get_args(leaf))
    if not isinstance(leaf, type):
        return "str", None
    if issubclass(leaf, bool):
        return "bool", None
    if issubclass(leaf, int) and not issubclass(leaf, Enum):
        return "int", None
    if issubclass(leaf, float):
        return "float", None
    if issubclass(leaf, datetime) or leaf is AwareDatetime:
        return "datetime", None
    if issubclass(leaf, date):
        return "date", None
    if issubclass(leaf, uuid.UUID):
        return "uuid", None
    if issubclass(leaf, Enum):
        return "enum", leaf
    if issubclass(leaf, BaseModel):
        return "model", leaf
    return "str", None


def _to_int(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"expected a whole number, got “{text[:40]}”")
    return int(text)


def _to_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"expected a number (e.g. 0.25), got “{text[:40]}”") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _to_datetime(text: str) -> datetime:
    try:
        if len(text) == 10:  # a date control: midnight UTC
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected a date (YYYY-MM-DD), got “{text[:40]}”") from None
    # A datetime-local control has no zone: the console shows and takes UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _to_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a date (YYYY-MM-DD), got “{text[:40]}”") from None


def _to_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValueError("not an id this page offered; pick one from the list") from None


def _convert(kind: str, detail: Any, text: str) -> Any:
    converters: dict[str, Callable[[str], Any]] = {
        "int": _to_int,
        "float": _to_float,
        "datetime": _to_datetime,
        "date": _to_date,
        "uuid": _to_uuid,
    }
    if kind in converters:
        return converters[kind](text)
    if kind == "enum":
        try:
            return detail(text)
        except ValueError:
            raise ValueError("one of " + ", ".join(str(m.value) for m in detail)) from None
    if kind == "choice":
        if text not in detail:
            raise ValueError("one of " + ", ".join(detail))
        return text
    if kind == "model":
        raise TypeError("a nested schema is read with FormData.nest")
    return text


N = TypeVar("N", bound=BaseModel)


def build_pair(first: FormData, first_model: type[M], second: FormData, second_model: type[N]) -> tuple[M, N]:
    """Two schemas filled by one form (an account and its organization), every field at fault named."""
    errors: dict[str, str] = {}
    built: list[Any] = []
    for data, model in ((first, first_model), (second, second_model)):
        try:
            built.append(data.build(model))
        except FormInvalid as exc:
            errors.update({str(e["field"]): str(e["message"]) for e in exc.errors or []})
    if errors:
        raise FormInvalid(errors)
    return built[0], built[1]
