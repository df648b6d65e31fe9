"""/docs in a real browser that can reach nothing but the server: Swagger UI renders every operation."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import Server


async def test_docs_render_offline_under_their_csp(server: Server, browser: Any) -> None:
    """No request leaves the server's origin, no CSP violation, and the operations are listed."""
    context = await browser.new_context()
    outside: list[str] = []
    messages: list[str] = []

    async def only_the_server(route: Any) -> None:
        # The machine has no internet anyway; refusing here makes a CDN dependency fail loudly.
        if route.request.url.startswith(server.url):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_the_server)
    page = await context.new_page()
    page.on("console", lambda message: messages.append(message.text))
    try:
        await page.goto(server.url + "/docs")
        await page.wait_for_selector(".opblock", timeout=20_000)
        shown = await page.locator(".opblock").count()
    finally:
        await context.close()
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"].values()
    operations = sum(1 for item in paths for key in item if key in methods)
    assert outside == []
    assert not [m for m in messages if "Content Security Policy" in m], messages
    assert shown == operations
