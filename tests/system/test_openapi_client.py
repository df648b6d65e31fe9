"""The OpenAPI document as a client generator reads it: openapi-python-client generates a client from the
served document without a warning, every generated module imports, and the client uploads an import file
(a multipart `file` part) and reads the import back.

The client is generated once per session (offline, in a subprocess: ~3 s) and shared by the tests.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import pkgutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from raptorflow.app import create_app
from tests.conftest import create_org, make_settings, sign_up

PACKAGE = "raptorflow_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, str]]:
    """The generated client package (imported from a temporary directory) and the generator's output."""
    if not GENERATOR.exists():
        pytest.fail("openapi-python-client is a dev dependency: pip install -e '.[dev]'")
    root = tmp_path_factory.mktemp("openapi-client")
    document = root / "openapi.json"
    # The document depends on the code only: an app that never touches its database serves it.
    document.write_text(json.dumps(create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()))
    config = root / "config.json"
    # No formatter hooks: the generated code is imported, not read.
    config.write_text(json.dumps({"post_hooks": [], "package_name_override": PACKAGE}))
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(root / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE), output
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_generator_accepts_the_whole_document(generated: tuple[ModuleType, str]) -> None:
    """No operation or model skipped (the generator warns, then leaves it out), and every module imports:
    a multipart `file` without `format: binary`, or two bodies of one name, break one or the other."""
    package, output = generated
    assert "Warning" not in output, output
    broken = []
    modules = 0
    for info in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."):
        modules += 1
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # any failure to import is the finding
            broken.append(f"{info.name}: {exc!r}")
    assert broken == [], "\n".join(broken)
    assert modules > 300  # every operation and model, not an empty package


async def test_generated_client_uploads_an_import_and_reads_it(
    generated: tuple[ModuleType, str], client: httpx.AsyncClient
) -> None:
    """A file sent as the multipart `file` part by the generated client is imported; the job is read back."""
    package = generated[0]
    owner = await sign_up(client, f"gen-{uuid.uuid4().hex[:10]}@example.com")
    org_id = await create_org(owner, f"gen-{uuid.uuid4().hex[:10]}")
    create = importlib.import_module(f"{PACKAGE}.api.imports.create_import_api_v1_imports_post")
    get = importlib.import_module(f"{PACKAGE}.api.imports.get_import_api_v1_imports_import_id_get")
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")

    api = package.AuthenticatedClient(base_url="http://testserver", token=owner.tokens["access_token"])
    # The generated client speaks httpx: hand it one that reaches the app in-process.
    api.set_async_httpx_client(
        httpx.AsyncClient(
            transport=client._transport,
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {owner.tokens['access_token']}"},
        )
    )
    upload = models.CreateImportApiV1ImportsPostFilesBody(
        file=types.File(
            payload=io.BytesIO(b"203.0.113.77\nevil-gen.example.com\n"),
            file_name="blocklist.txt",
            mime_type="text/plain",
        ),
        format_=models.CreateImportApiV1ImportsPostFilesBodyFormat.TEXT,
        options=models.CreateImportApiV1ImportsPostFilesBodyImportOptions(tags=["generated"]),
    )
    created: Any = await create.asyncio_detailed(client=api, body=upload, x_organization_id=org_id)
    assert created.status_code == 202, created.content
    assert isinstance(created.parsed, models.ImportOut), created.content
    assert created.parsed.filename == "blocklist.txt"

    state = created.parsed
    for _ in range(100):  # the in-process job runs after the request's commit
        read: Any = await get.asyncio_detailed(state.id, client=api, x_organization_id=org_id)
        assert read.status_code == 200, read.content
        state = read.parsed
        if state.status in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.05)
    assert state.status == "succeeded", state.to_dict()
    assert (state.created, state.rejected) == (2, 0)
    assert state.options.to_dict()["tags"] == ["generated"]  # the JSON `options` part was read
    await api.get_async_httpx_client().aclose()
