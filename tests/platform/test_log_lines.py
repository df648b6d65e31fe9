"""Records of the standard `logging` module come out as the same JSON lines as structlog's events."""

from __future__ import annotations

import logging

import orjson
import pytest

from raptorflow.kit.logging import configure_logging, get_logger


def test_stdlib_records_are_json_lines_with_the_traceback_inside(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json", level="INFO")
    capsys.readouterr()
    try:
        raise ConnectionRefusedError("connect call failed ('127.0.0.1', 5432)")
    except ConnectionRefusedError:
        logging.getLogger("asyncpg.pool").warning(
            "Failed to restore the pool connection floor; retrying", exc_info=True
        )
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received: %s", "Bearer rf_abcdefghijkl")
    logging.getLogger("sqlalchemy.pool").info("below the level libraries are heard from")
    get_logger("raptorflow.test").info("structlog.event", n=1)

    lines = capsys.readouterr().err.splitlines()
    events = [orjson.loads(line) for line in lines]  # fails on any line that is not JSON
    assert [e["event"] for e in events] == [
        "Failed to restore the pool connection floor; retrying",
        "Invalid HTTP request received: [redacted]",  # secrets scrubbed as in our own events
        "structlog.event",
    ]
    pool = events[0]
    assert pool["logger"] == "asyncpg.pool" and pool["level"] == "warning" and "timestamp" in pool
    assert pool["exception"].startswith("Traceback") and "ConnectionRefusedError" in pool["exception"]
