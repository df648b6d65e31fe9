"""structlog set-up: JSON lines or a readable console, with secrets scrubbed from every event."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson
import structlog

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(authorization|cookie|password|passwd|secret|token|api[_-]?key|credential|signature|private)", re.I
)
_SECRET_VALUE = re.compile(
    r"(bearer\s+\S+|basic\s+\S+|rf_[A-Za-z0-9_]{8,}|eyJ[A-Za-z0-9_-]{10,}\.[^\s\"']+)", re.I
)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    return value


def scrub_secrets(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace anything that looks like a credential by a marker, by key name or by shape."""
    for key in list(event_dict):
        if key in ("event", "level", "timestamp", "logger"):
            if isinstance(event_dict[key], str):
                event_dict[key] = _SECRET_VALUE.sub(REDACTED, event_dict[key])
            continue
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time of writing (it may be swapped after set-up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(*, fmt: str = "json", level: str = "INFO") -> None:
    """Configure structlog (and the stdlib root logger) for this process."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if fmt == "json" else structlog.processors.StackInfoRenderer(),
        scrub_secrets,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the stdlib go to stderr at WARNING and above.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


def get_logger(name: str | None = None) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)
