"""GraphiQL in a real browser: headless Chromium, driven by Playwright, against the service `make run` starts.

GraphiQL must work offline (every file it loads comes from the service itself), with the session of
a person signed in through the admin, for queries and for subscriptions over the WebSocket.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, WebSocketRoute, expect, sync_playwright

from tests.support.demo import DemoServer, demo_server
from tests.support.processes import ROOT

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright's own browsers are never downloaded
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
# Screenshots for a person to look at (the directory ignores itself in git): GraphiQL with the
# live counters just changed, and the last page each browser test saw, passed or failed.
ARTIFACTS = ROOT / "tests" / "artifacts"
SCREENSHOT = ARTIFACTS / "graphiql.png"
TIMEOUT_MS = 30_000  # for each wait on the page (Playwright waits, expect); GraphiQL starts in about a second

SOURCES_QUERY = "{ sources { id country status deliveryStatus } }"
COUNTERS = "dataLibrary { sections { key counters { key count } } }"

# GraphiQL 4's editors are CodeMirror 5 instances; their text is the pane's whole content,
# also the lines scrolled out of view (which are not in the DOM).
RESPONSE_JS = "document.querySelector('.graphiql-response .result-window .CodeMirror').CodeMirror.getValue()"
QUERY_JS = "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("browser"), token_name="browser tests") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"needs Chromium at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Traffic:
    """What a page asked for: everything off the service itself is blocked and listed."""

    origin: str
    requests: list[str] = field(default_factory=list)  # WebSockets included
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_request(self, route: Route) -> None:
        url = route.request.url
        self.requests.append(url)
        if url == self.origin or url.startswith(f"{self.origin}/"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def on_websocket(self, websocket: WebSocketRoute) -> None:
        self.requests.append(websocket.url)
        if websocket.url.startswith(f"{self.origin.replace('http', 'ws', 1)}/"):
            websocket.connect_to_server()  # and pass every message through, both ways
        else:
            self.blocked.append(websocket.url)
            websocket.close()


@pytest.fixture
def page(browser: Browser, server: DemoServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    """Return a page in a fresh browser profile whose traffic is checked when the test ends."""
    traffic = Traffic(origin=server.origin)
    context: BrowserContext = browser.new_context(
        viewport={"width": 1700, "height": 1500}, service_workers="block", base_url=server.origin
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.route("**/*", traffic.on_request)
    context.route_web_socket(re.compile(".*"), traffic.on_websocket)
    page = context.new_page()
    page.on("pageerror", lambda error: traffic.errors.append(str(error)))
    try:
        yield page
    finally:
        screenshot(page, ARTIFACTS / f"{request.node.originalname}.png")
        context.close()
    # Offline proof: the page needed nothing from anywhere but the service.
    assert traffic.blocked == [], f"requests off the service {server.origin}: {traffic.blocked}"
    assert traffic.errors == []
    assert f"{server.origin}/static/graphiql/graphiql.min.js" in traffic.requests


def screenshot(page: Page, path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")
    page.screenshot(path=path)


def open_graphiql(page: Page) -> None:
    page.goto("/graphql")
    expect(page.locator(".graphiql-query-editor .CodeMirror")).to_be_visible(timeout=TIMEOUT_MS)


def run_in_graphiql(page: Page, operation: str) -> str:
    """Replace the query editor's text with `operation`, as typed, and press GraphiQL's run button.

    Return the result pane's text from before, for next_response.
    """
    page.locator(".graphiql-query-editor .CodeMirror").click()
    page.keyboard.press("ControlOrMeta+A")
    page.keyboard.insert_text(operation)  # text input without key presses: no auto-closed brackets
    page.keyboard.press("ControlOrMeta+Home")  # back to the start of a line wider than the editor
    assert page.evaluate(QUERY_JS) == operation
    # GraphiQL reads the editor (is it a subscription?) 100 ms after the last change, then
    # calls onEditQuery, which puts the text in the address (?q=): run it once it is there.
    page.wait_for_function("op => new URLSearchParams(location.search).get('q') === op", arg=operation)
    previous = page.evaluate(RESPONSE_JS)
    page.locator(".graphiql-execute-button").click()
    return previous


def next_response(page: Page, previous: str) -> dict[str, Any]:
    """Wait until the result pane shows JSON other than `previous`; return it decoded."""
    text = page.wait_for_function(
        """previous => {
            const text = %s;
            if (text === previous) return null;
            try { JSON.parse(text); return text; } catch { return null; }
        }"""
        % RESPONSE_JS,
        arg=previous,
        timeout=TIMEOUT_MS,
    ).json_value()
    return json.loads(text)


def counters(data_library: dict[str, Any]) -> dict[str, int]:
    """Return the data library's counters as {"section.counter": count}."""
    return {f"{s['key']}.{c['key']}": c["count"] for s in data_library["sections"] for c in s["counters"]}


def test_graphiql_runs_a_query_and_a_live_subscription_with_the_admin_session_offline(
    page: Page, server: DemoServer
) -> None:
    # Given a person signed in through the admin's login page
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{server.origin}/admin/", timeout=TIMEOUT_MS)

    # When they open GraphiQL, whose explorer lists the schema's fields (read by introspection),
    open_graphiql(page)
    page.get_by_role("button", name="Show GraphiQL Explorer").click()
    expect(page.locator(".graphiql-explorer-root")).to_contain_text("dataLibrary", timeout=TIMEOUT_MS)

    # and run the README's query
    previous = run_in_graphiql(page, SOURCES_QUERY)

    # Then the result pane shows the demo data, exactly as the API gives it to a token
    shown = next_response(page, previous)
    expected = server.post(SOURCES_QUERY)
    assert len(expected["data"]["sources"]) == 36
    assert shown == expected
    expect(page.locator(".result-window")).to_contain_text(expected["data"]["sources"][0]["id"], timeout=TIMEOUT_MS)

    # When they start the live data library, over the WebSocket with their session
    previous = run_in_graphiql(page, f"subscription {{ {COUNTERS} }}")
    before = next_response(page, previous)
    assert before == server.post(f"{{ {COUNTERS} }}")
    before_counters = counters(before["data"]["dataLibrary"])

    # and an integrator deactivates an active source that counts in Data Delivery
    source = next(
        s
        for s in shown["data"]["sources"]
        if s["status"] == "ACTIVE" and s["deliveryStatus"] in {"RECEIVED", "AWAITING", "DELAYED"}
    )
    changed = server.post(
        "mutation($id: ID!) { deactivateSource(id: $id) { ... on Source { status } } }",
        {"id": source["id"]},
    )
    assert changed == {"data": {"deactivateSource": {"status": "INACTIVE"}}}

    # Then the counters on the page change: one fewer active source with that delivery status,
    # and every counter as the API now reports it
    after = next_response(page, page.evaluate(RESPONSE_JS))
    after_counters = counters(after["data"]["dataLibrary"])
    delivery = f"delivery.{source['deliveryStatus'].lower()}"
    assert after_counters[delivery] == before_counters[delivery] - 1
    assert after == server.post(f"{{ {COUNTERS} }}")
    screenshot(page, SCREENSHOT)


def test_signing_in_with_the_login_mutation_inside_graphiql_needs_no_reload(page: Page, server: DemoServer) -> None:
    # Given GraphiQL opened by nobody signed in (so no CSRF cookie yet)
    open_graphiql(page)
    page.evaluate("window.loadedOnce = true")
    assert [c["name"] for c in page.context.cookies()] == []

    # When they sign in with the login mutation in GraphiQL
    previous = run_in_graphiql(
        page, 'mutation { login(username: "demo", password: "demo") { ... on Viewer { username } } }'
    )
    signed_in = next_response(page, previous)
    assert signed_in == {"data": {"login": {"username": "demo"}}}
    assert sorted(c["name"] for c in page.context.cookies()) == ["csrftoken", "sessionid"]

    # Then the next POST carries the session and the new CSRF token, without a reload
    previous = run_in_graphiql(page, "{ viewer { username } }")
    viewer = next_response(page, previous)
    assert viewer == {"data": {"viewer": {"username": "demo"}}}

    # and so does the next WebSocket
    previous = run_in_graphiql(page, "subscription { dataLibrary { windowDays } }")
    live = next_response(page, previous)
    assert live == server.post("{ dataLibrary { windowDays } }")
    assert page.evaluate("window.loadedOnce") is True


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value is not None]


def test_the_graphiql_page_loads_only_the_services_own_static_files(server: DemoServer) -> None:
    # Without a browser: the page's own references, each served by the service (WhiteNoise).
    request = urllib.request.Request(f"http://{server.address}/graphql", headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own loopback server)
        parser = _Assets()
        parser.feed(response.read().decode())

    assets = [url for url in parser.urls if not url.startswith("data:")]
    assert [url for url in assets if not url.startswith("/static/")] == []
    assert "/static/graphiql/graphiql.min.js" in assets
    for url in assets:
        with urllib.request.urlopen(f"http://{server.address}{url}", timeout=10) as response:
            assert response.status == 200, url


def test_the_graphiql_files_are_those_their_sources_record() -> None:
    checked = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_graphiql"), "--check"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
