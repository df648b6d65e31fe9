"""A STIX bundle read from byte chunks as windows of objects, without holding the whole bundle.

A bundle of 100,000 indicators is ~50 MB of JSON and ~300 MB of Python objects once parsed at once.
Here the `objects` array is cut into windows of about WINDOW bytes, each parsed on its own with
orjson: a cut is tried after a `}` followed by `,` and `{`, and kept only when `[` + the slice + `]`
parses. That check is exact: the slice starts at an element of the array, so it parses only when the
`}` closes that element (inside a string or a nested value the appended `]` leaves something open).
Anything that is not `{… "objects": [ …` near the start (a list, a single object, odd input) is read
whole and parsed once, as before.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from raptorflow.kit.errors import InvalidInput

WINDOW = 1 << 20
HEAD_LIMIT = 64 * 1024
_TRIES = 8
_HEAD = re.compile(rb'"objects"\s*:\s*\[')
_NEXT = re.compile(rb"\s*,\s*(?=\{)")


def objects_of(data: Any) -> list[Any]:
    """The objects of a parsed bundle, list of objects or single object (InvalidInput otherwise)."""
    if isinstance(data, dict):
        if data.get("type") != "bundle":
            if "type" in data and "id" in data:
                return [data]
            raise InvalidInput("type", "expected a STIX bundle (type 'bundle') or a list of STIX objects")
        objects = data.get("objects", [])
        if not isinstance(objects, list):
            raise InvalidInput("objects", "must be a list of STIX objects")
        return objects
    if isinstance(data, list):
        return data
    raise InvalidInput("body", "expected a STIX bundle or a list of STIX objects")


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("body", f"not JSON: {exc}") from None


def _head(buf: bytes) -> tuple[dict[str, Any], int] | None:
    """(keys before `objects`, offset of the first element) when buf starts a streamable bundle."""
    start = buf[:HEAD_LIMIT]
    if start.lstrip()[:1] != b"{":
        return None
    match = _HEAD.search(start)
    if match is None:
        return None
    try:
        head = orjson.loads(buf[: match.start()] + b'"objects":[]}')
    except orjson.JSONDecodeError:
        return None
    if not isinstance(head, dict) or head.get("type", "bundle") != "bundle":
        return None
    return head, match.end()


async def bundle_windows(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Any]]:
    """Lists of the bundle's objects in order (InvalidInput when it is not JSON or not a bundle)."""
    source = chunks.__aiter__()
    buf = b""
    done = False

    async def read() -> None:
        nonlocal buf, done
        try:
            buf += await source.__anext__()
        except StopAsyncIteration:
            done = True

    while not done and len(buf) < HEAD_LIMIT:
        await read()
    found = _head(buf)
    if found is None:
        while not done:
            await read()
        yield objects_of(_loads(buf))
        return
    head, pos = found
    want = WINDOW
    while True:
        while not done and len(buf) - pos < want:
            buf = buf[pos:]
            pos = 0
            await read()
        if done:
            tail = _loads(b'{"objects":[' + buf[pos:])
            if not isinstance(tail, dict) or not isinstance(tail.get("objects"), list):
                raise InvalidInput("objects", "must be a list of STIX objects")
            if {**head, **tail}.get("type") != "bundle":
                raise InvalidInput("type", "expected a STIX bundle (type 'bundle') or a list of STIX objects")
            if tail["objects"]:
                yield tail["objects"]
            return
        window, cut = _cut(buf, pos)
        if window is None:
            want = 2 * (len(buf) - pos)  # one element larger than the window: read on
            continue
        want = WINDOW
        pos = cut
        yield window


def _cut(buf: bytes, pos: int) -> tuple[list[Any] | None, int]:
    """The complete elements of buf[pos:] up to the last boundary that parses, and where the next starts."""
    end, tries = len(buf), 0
    while tries < _TRIES:
        at = buf.rfind(b"}", pos, end)
        if at < 0:
            break
        end = at
        follow = _NEXT.match(buf, at + 1)
        if follow is None:
            continue
        tries += 1
        try:
            window = orjson.loads(b"[" + buf[pos : at + 1] + b"]")
        except orjson.JSONDecodeError:
            continue
        if isinstance(window, list):
            return window, follow.end()
    return None, pos
