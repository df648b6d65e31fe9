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


# Libraries that log through the standard `logging` module (asyncpg's pool, uvicorn, celery,
# sqlalchemy, py.warnings) are heard from this level up (or the process's level, if higher).
STDLIB_LEVEL = logging.WARNING
_HANDLER = "raptorflow.json"  # the name of the root handler configure_logging installs
# Loggers that bring their own plain-text handlers (uvicorn's default configuration).
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(*, fmt: str = "json", level: str = "INFO") -> None:
    """Configure structlog and the standard `logging` module: one output format for every line."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    # A traceback is a field of the JSON line (one event, one line), or the console's own rendering.
    exceptions: Any = structlog.processors.format_exc_info
    if fmt != "json":
        exceptions = structlog.processors.StackInfoRenderer()
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            exceptions,
            scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        # One write per event (message and newline together), so lines from threads never interleave.
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            stamp,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exceptions,
            scrub_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.set_name(_HANDLER)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Replaces the handler of an earlier call only: a host's own handlers (pytest's capture) stay.
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(STDLIB_LEVEL, getattr(logging, level)))
    # Loggers that brought their own handlers (uvicorn's default config) would print a second,
    # plain-text copy: they hand their records to the root handler instead.
    for name in _OWN_HANDLERS:
        named = logging.getLogger(name)
        for old in named.handlers[:]:
            named.removeHandler(old)
        named.propagate = True
    logging.captureWarnings(True)


def keep_logging(**_signal: Any) -> None:
    """A receiver of Celery's `setup_logging` signal: with one connected, Celery leaves the logging set
    up by `configure_logging` alone (no plain-text root handler, no stdout/stderr redirection)."""


def get_logger(name: str | None = None) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)
