"""The production-like lookup mix as wrk really sends it (run: pytest bench/test_lookup_mix.py).

A recording HTTP server on 127.0.0.1 stands in for RaptorFlow; wrk runs the bench's own scripts
against it, so what is checked is the load the benchmark figures describe.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import hot_set_lua, indicator_values, lookup_pool, production_lua

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
KEYS = [f"key-{i}" for i in range(10)]


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with an empty 200 and records (connection, value, key)."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        value = parse_qs(urlsplit(self.path).query)["value"][0]
        with self.lock:
            self.seen.append((self.client_address[1], value, self.headers.get("X-API-Key", "")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api/v1/lookup"
    httpd.shutdown()
    httpd.server_close()


def wrk(url: str, script: Path, *headers: str) -> list[tuple[int, str, str]]:
    args = ["wrk", "-t", "2", "-c", "4", "-d", "2s", "-s", str(script)]
    for header in headers:
        args += ["-H", header]
    subprocess.run([*args, url], check=True, capture_output=True, timeout=60)
    return list(Recorder.seen)


def by_connection(seen: list[tuple[int, str, str]]) -> list[list[str]]:
    streams: dict[int, list[str]] = defaultdict(list)
    for port, value, _key in seen:
        streams[port].append(value)
    return [s for s in streams.values() if len(s) >= 20]


def overlap(seen: list[tuple[int, str, str]]) -> float:
    """The largest share of one connection's values that another connection also asked for."""
    streams = [set(s) for s in by_connection(seen)]
    assert len(streams) >= 2
    return max(len(a & b) / min(len(a), len(b)) for a in streams for b in streams if a is not b)


def data() -> list[tuple[int, list[str]]]:
    main = indicator_values(50_000, 1)
    other = indicator_values(9_000, 2)
    return [(0, main), *((i + 1, other[i::9]) for i in range(9))]


def test_production_mix_draws_every_request_from_all_data_with_misses_and_ten_keys(
    server: str, tmp_path: Path
) -> None:
    loaded = data()
    pool, miss_share = lookup_pool(tmp_path, loaded, 200_000, 6)
    seen = wrk(server, production_lua(tmp_path, pool, KEYS, 11))
    holder = {value: org for org, values in loaded for value in values}

    assert len(seen) > 500
    # Every connection walks its own sequence: connections seldom ask for the same values.
    assert overlap(seen) < 0.2
    # Values come from the whole data set, rarely twice (the hot set below: at most 2,000 values).
    values = Counter(value for _port, value, _key in seen)
    assert len(values) > 0.8 * len(seen)
    assert Counter(holder.get(v) for v in values)[0] > 0.5 * len(values)  # the big org's share
    # About one in five is unknown; every known value is asked with its own org's key.
    misses = sum(1 for _port, value, _key in seen if value not in holder)
    assert miss_share == pytest.approx(0.2, abs=0.01)
    assert misses / len(seen) == pytest.approx(0.2, abs=0.05)
    assert all(key == KEYS[holder[value]] for _port, value, key in seen if value in holder)
    assert len({key for _port, _value, key in seen}) == len(KEYS)


def test_hot_set_is_what_its_label_says(server: str, tmp_path: Path) -> None:
    main = indicator_values(5_000, 1)
    seen = wrk(server, hot_set_lua(tmp_path, main), "X-API-Key: key-0")

    # One key, 2,000 known values, and both threads walking the same list: connections ask for the
    # same values (the production mix above seldom does).
    assert {key for _port, _value, key in seen} == {"key-0"}
    assert {value for _port, value, _key in seen} <= set(main)
    assert len({value for _port, value, _key in seen}) <= 2_000
    assert overlap(seen) > 0.5
