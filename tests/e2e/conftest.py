"""A real `raptorflow serve` process and headless Chromium (Debian's, driven by Playwright for Python)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ATTACK_SAMPLE = ROOT / "tests" / "fixtures" / "attack" / "enterprise-attack-sample.json"
SETUP_LINE = re.compile(r"(http://\S+/setup\?token=\S+)")


@dataclass
class Server:
    """A running server: its base URL, the first-run setup link it printed, its log files."""

    url: str
    setup_url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`raptorflow serve` on a fresh SQLite file and a free port, with the ATT&CK sample loaded."""
    _need_chromium()
    work = tmp_path_factory.mktemp("e2e-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPTORFLOW_")}
    env.update(
        RAPTORFLOW_DATABASE_URL=f"sqlite+aiosqlite:///{work / 'e2e.db'}",
        RAPTORFLOW_PUBLIC_URL=url,
        RAPTORFLOW_LOG_FORMAT="json",
        RAPTORFLOW_ARGON2_TIME_COST="1",
        RAPTORFLOW_ARGON2_MEMORY_KIB="1024",
    )
    cli = [sys.executable, "-m", "raptorflow"]
    subprocess.run(
        [*cli, "attack", "sync", "--file", str(ATTACK_SAMPLE)],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )
    log = work / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*cli, "serve", "--port", str(port)], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        setup_url = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail("raptorflow serve exited:\n" + log.read_text())
            found = SETUP_LINE.search(log.read_text())
            if found and not setup_url:
                setup_url = found.group(1)
            try:
                if setup_url and httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the server did not come up in 30 s:\n" + log.read_text())
        yield Server(url, setup_url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium from the distribution (never a Playwright-downloaded build)."""
    _need_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # launch() gives Chromium a fresh temporary profile (user-data-dir) and removes it on close;
        # Playwright refuses a --user-data-dir argument here (that is launch_persistent_context's job).
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: pytest's temporary directory of the run, never the repository."""
    return tmp_path_factory.mktemp("screenshots")


PASSWORD = "correct horse battery staple"
OWNER = "owner@e2e.example"


@dataclass
class Owner:
    """The first owner, signed in, in the org the setup created."""

    context: Any
    page: Any
    org_url: str

    @property
    def org_id(self) -> str:
        """The org's id (from its address)."""
        return self.org_url.rsplit("/", 1)[-1]


async def new_page(browser: Any, server: Server, width: int = 1360, height: int = 900) -> tuple[Any, Any]:
    """A fresh browser context (own cookies) and a page in it."""
    context = await browser.new_context(base_url=server.url, viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    return context, await context.new_page()


async def sign_in(browser: Any, server: Server, email: str, password: str = PASSWORD) -> tuple[Any, Any]:
    """A fresh browser context signed in through the form."""
    context, page = await new_page(browser, server)
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/login" not in url)
    return context, page


@pytest.fixture(scope="session")
async def owner(browser: Any, server: Server) -> AsyncIterator[Owner]:
    """Follow the setup link `raptorflow serve` printed: create the first owner and organization."""
    context, page = await new_page(browser, server)
    await page.goto(server.setup_url)
    # The slug's pattern compiles in Chromium (v flag) and the browser itself refuses a bad slug.
    slug = page.locator("#org_slug")
    await slug.fill("Not A Slug")
    assert await slug.evaluate("e => e.validity.patternMismatch") is True
    await page.get_by_label("Name", exact=True).first.fill("Olivia Owner")
    await page.get_by_label("Email").fill(OWNER)
    await page.get_by_label("Password (12 characters or more)").fill(PASSWORD)
    await page.locator("#org_name").fill("Acme SOC")
    await slug.fill("acme-soc")
    assert await slug.evaluate("e => e.validity.valid") is True
    await page.get_by_role("button", name="Create and sign in").click()
    await page.wait_for_url("**/o/*/")
    org_url = page.url.rstrip("/")
    yield Owner(context, page, org_url[len(server.url) :])
    await context.close()
