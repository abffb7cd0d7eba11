"""The client recipes of docs/clients.md, run as written against a real server (scripts/serve)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from django.db import connection
from graphql import FragmentDefinitionNode, OperationDefinitionNode, build_schema, parse, validate

from catalog import services
from catalog.models import Source, SourceEvent, last_sequence
from tests.support.demo import DemoServer, demo_server
from tests.support.identities import issue_token
from tests.support.polling import poll_until
from tests.support.processes import ROOT, serving_several
from tests.support.services import needs_services, services_env
from tests.support.sources import source_values

DOC = ROOT / "docs" / "clients.md"
MIGRATION_DOC = ROOT / "docs" / "migrating-from-websocket-consumers.md"
RUN_TIMEOUT = 60  # seconds for one recipe run; it finishes in about one
INSTALL_TIMEOUT = 300
# npm's error codes for a registry it cannot reach (offline), as against a pin that does not exist.
OFFLINE = {"ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH", "EHOSTUNREACH"}
NOT_A_TOKEN = "cat_not-a-token"
BLANK_COUNTRY = {"kind": "VALIDATION", "field": "country", "message": "This field cannot be blank.", "code": "blank"}
REFUSED = (
    "The service closed the connection with 4403: "
    "missing, wrong, revoked or expired credentials, or no catalog.view_source."
)


def recipe(name: str) -> str:
    """Return the fenced block that follows `<!-- recipe: name -->` in docs/clients.md."""
    blocks = re.findall(r"<!-- recipe: %s -->\n```\w*\n(.*?)^```$" % re.escape(name), DOC.read_text(), re.S | re.M)
    assert len(blocks) == 1, f"{DOC} should have one block after <!-- recipe: {name} -->, not {len(blocks)}"
    return blocks[0]


def graphql_documents(path: Path) -> list[str]:
    """Return the GraphQL of a doc: its graphql blocks, and the gql`...` templates of its code blocks."""
    text = path.read_text()
    blocks = re.findall(r"^ *```graphql\n(.*?)^ *```$", text, re.S | re.M)
    return blocks + re.findall(r"gql`(\s*(?:query|mutation|subscription)\b.*?)`", text, re.S)


@pytest.mark.parametrize("path", [DOC, MIGRATION_DOC], ids=lambda path: path.name)
def test_the_graphql_in_the_docs_is_valid_against_the_schema(path: Path) -> None:
    """Check every operation the docs show, the Apollo and urql ones included, which no test runs."""
    schema = build_schema((ROOT / "schema.graphql").read_text())
    sources = graphql_documents(path)
    # A fragment shown once on the page is sent along with each document that spreads it.
    fragments = {
        node.name.value: source
        for source in sources
        for node in parse(source).definitions
        if isinstance(node, FragmentDefinitionNode)
    }
    operations = [s for s in sources if any(isinstance(n, OperationDefinitionNode) for n in parse(s).definitions)]

    problems = {}
    for source in operations:
        spread = set(re.findall(r"\.\.\.(\w+)", source)) - set(re.findall(r"fragment (\w+)", source))
        document = parse("\n".join([source, *(fragments[name] for name in sorted(spread))]))
        if errors := validate(schema, document):
            problems[source.strip().splitlines()[0]] = [error.message for error in errors]

    assert operations
    assert problems == {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("clients"), token_name="recipes") as running:
        yield running


def recipe_env(server: DemoServer) -> dict[str, str]:
    """Return the environment a recipe reads: where the service is, and the token."""
    return {"CATALOG_URL": f"ws://{server.address}/graphql", "CATALOG_TOKEN": server.token}


def created_count(server: DemoServer) -> int:
    """Return the data library's "created" counter now, read over HTTP."""
    data = server.post("{ dataLibrary { sections { key counters { key count } } } }")["data"]
    library = next(s for s in data["dataLibrary"]["sections"] if s["key"] == "library")
    return next(c["count"] for c in library["counters"] if c["key"] == "created")


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=os.environ | env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )


def assert_the_recipe_ran(
    result: subprocess.CompletedProcess[str], server: DemoServer, created: int, vendor: str
) -> None:
    """Assert the recipe printed exactly the lines docs/clients.md shows, and left no source behind."""
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    source_id = lines[3]["addSource"]["id"]
    assert str(uuid.UUID(source_id)) == source_id
    source = {"country": "Spain", "dataVendor": vendor, "status": "ACTIVE", "version": 1}
    assert lines == [
        {"viewer": "demo", "activeSources": 5},
        {"dataLibrary": {"created": created}},
        {"addSource": {"messages": [BLANK_COUNTRY]}},
        {"addSource": {"__typename": "Source", "id": source_id, **source}},
        {"sourceEvents": {"kind": "CREATED", "sourceId": source_id, "actor": "demo", "source": source}},
        {"dataLibrary": {"created": created + 1}},
        {"deleteSource": {"__typename": "DeletedSource", "id": source_id}},
    ]
    assert server.post('{ source(id: "%s") { id } }' % source_id) == {"data": {"source": None}}


# Python: gql


def test_the_python_recipe_pins_the_gql_this_suite_runs() -> None:
    assert f'pip install "gql[websockets]=={importlib.metadata.version("gql")}"' in recipe("python-install")


@pytest.fixture
def python_recipe(tmp_path: Path) -> Path:
    script = tmp_path / "catalog_client.py"
    script.write_text(recipe("python"))
    return script


def test_the_python_recipe_receives_its_write_on_both_subscriptions(server: DemoServer, python_recipe: Path) -> None:
    created = created_count(server)

    result = run([sys.executable, str(python_recipe)], recipe_env(server), python_recipe.parent)

    assert_the_recipe_ran(result, server, created, "Python recipe")


def test_the_python_recipe_gives_up_on_a_token_that_is_not_valid(server: DemoServer, python_recipe: Path) -> None:
    env = recipe_env(server) | {"CATALOG_TOKEN": NOT_A_TOKEN}

    result = run([sys.executable, str(python_recipe)], env, python_recipe.parent)

    assert (result.returncode, result.stdout, result.stderr) == (1, "", REFUSED + "\n")


# Node: graphql-ws and ws


def _without_node(reason: str) -> NoReturn:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"REQUIRE_SERVICES=1: the Node recipe cannot be skipped: {reason}")
    pytest.skip(f"the Node recipe needs node 20+, npm and the npm registry: {reason}")


@dataclass(frozen=True)
class NodeRecipe:
    node: str  # the node executable
    script: Path  # the recipe, next to the node_modules its imports resolve from
    follow: Path | None = None  # the follower recipe, beside it

    def run(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return run([self.node, str(self.script)], env, self.script.parent)


def _node_and_npm() -> tuple[str, str]:
    """Return the node and npm executables (node 20 or later), or skip saying why (fail under REQUIRE_SERVICES)."""
    tools = {tool: shutil.which(tool) for tool in ("node", "npm")}
    if missing := [tool for tool, path in tools.items() if path is None]:
        _without_node(f"{' and '.join(missing)} not found on PATH")
    node, npm = str(tools["node"]), str(tools["npm"])
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        _without_node(f"node is {version}")
    return node, npm


def _npm_install(npm: str, folder: Path, packages: list[str]) -> None:
    """Install the pinned `packages` into `folder`; skip when the registry is out of reach."""
    installed = subprocess.run(
        [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", *packages],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    if installed.returncode != 0:
        code = re.search(r"^npm error code (\w+)", installed.stderr, re.M)
        if code and code[1] in OFFLINE:
            _without_node(f"npm install could not reach the registry ({code[1]})")
        pytest.fail(f"npm install {' '.join(packages)} failed:\n{installed.stderr}")


@pytest.fixture(scope="module")
def node_recipe(tmp_path_factory: pytest.TempPathFactory) -> NodeRecipe:
    """Install the packages docs/clients.md pins into a new folder, and put the Node recipe there."""
    node, npm = _node_and_npm()
    install = recipe("node-install").split()
    assert install[:2] == ["npm", "install"]
    packages = install[2:]
    assert all(re.fullmatch(r"[\w@/.-]+@\d+\.\d+\.\d+", package) for package in packages), packages
    folder = tmp_path_factory.mktemp("node-recipe")
    _npm_install(npm, folder, packages)
    script = folder / "catalog-client.mjs"
    script.write_text(recipe("node"))
    follow = folder / "catalog-follow.mjs"
    follow.write_text(recipe("node-follow"))
    return NodeRecipe(node=node, script=script, follow=follow)


def test_the_node_recipe_receives_its_write_on_both_subscriptions(node_recipe: NodeRecipe, server: DemoServer) -> None:
    created = created_count(server)

    result = node_recipe.run(recipe_env(server))

    assert_the_recipe_ran(result, server, created, "Node recipe")


def test_the_node_recipe_gives_up_on_a_token_that_is_not_valid(node_recipe: NodeRecipe, server: DemoServer) -> None:
    result = node_recipe.run(recipe_env(server) | {"CATALOG_TOKEN": NOT_A_TOKEN})

    assert (result.returncode, result.stdout, result.stderr) == (1, "", REFUSED + "\n")


# Both followers: resuming after a SIGTERM, on another process


FOLLOWED = 1000  # changes made while the follower's process stops and it resumes on another
SIGTERM_AFTER = 100  # the follower has printed this many live changes when its process is stopped
WRITTEN_BEFORE_SIGTERM = 200  # the rest are written once the stop has begun
FOLLOW_TIMEOUT = 180


@needs_services
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("client", ["python", "node"])
def test_a_follower_stopped_by_sigterm_resumes_on_another_process_with_every_change_once_in_order(
    client: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if client == "python":
        script = tmp_path / "follow.py"
        script.write_text(recipe("python-follow"))
        command = [sys.executable, str(script)]
    else:
        node_recipe: NodeRecipe = request.getfixturevalue("node_recipe")
        command = [node_recipe.node, str(node_recipe.follow)]
    token = issue_token("admin", username=f"{client}-follower")
    sources = [Source.objects.create(**source_values(panel=f"Panel {n}")).pk for n in range(10)]
    after = SourceEvent.objects.order_by("sequence").last().cursor  # where the follower left off
    start = last_sequence()
    stopping = threading.Event()

    def write() -> None:
        try:
            for n in range(FOLLOWED):
                if n == WRITTEN_BEFORE_SIGTERM:
                    assert stopping.wait(FOLLOW_TIMEOUT), "the follower never printed enough to stop its process"
                data = {"scope_of_subscription": f"change {n}"}
                services.source_update(actor=None, source_id=sources[n % len(sources)], data=data)
        finally:
            connection.close()  # this thread's own

    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    with serving_several(services_env(), logs, ready=True) as (first, second):
        env = {
            "CATALOG_URL": f"ws://{first.address}/graphql,ws://{second.address}/graphql",
            "CATALOG_TOKEN": token,
            "CATALOG_AFTER": after,
            "CATALOG_COUNT": str(FOLLOWED),
        }
        follower = subprocess.Popen(
            command, env=os.environ | env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        printed: list[str] = []
        reader = threading.Thread(target=lambda: printed.extend(iter(follower.stdout.readline, "")))
        reader.start()
        writer = ThreadPoolExecutor(1).submit(write)
        try:
            poll_until(lambda: len(printed) >= SIGTERM_AFTER or follower.poll() is not None, "live changes printed")
            first.process.send_signal(signal.SIGTERM)  # a deploy: 1001 to each socket, then exit
            stopping.set()
            writer.result(timeout=FOLLOW_TIMEOUT)
            follower.wait(timeout=FOLLOW_TIMEOUT)
        finally:
            stopping.set()
            if follower.poll() is None:
                follower.kill()
            reader.join()
        errors = follower.stderr.read()

    logged = [
        {"cursor": event.cursor, "kind": event.kind, "sourceId": str(event.source_id), "version": event.version}
        for event in SourceEvent.objects.filter(sequence__gt=start).order_by("sequence")
    ]
    assert len(logged) == FOLLOWED
    assert follower.returncode == 0, errors
    assert [json.loads(line) for line in printed] == logged  # every change once, in commit order
    assert "closed with 1001" in errors, errors


# gql with its default transport: it offers the legacy subprotocol first


def test_gql_with_its_default_transport_runs_a_query_a_mutation_and_a_subscription(server: DemoServer) -> None:
    from gql import Client, GraphQLRequest, gql
    from gql.transport.websockets import WebsocketsTransport

    library = gql("subscription { dataLibrary { sections { key counters { key count } } } }")
    add = gql(
        'mutation { addSource(input: {country: "Default transport", dataVendor: "gql", panel: "P", dataType: "T"}) '
        "{ ... on Source { id country } } }"
    )

    def created(data: dict) -> int:
        return next(c["count"] for s in data["dataLibrary"]["sections"] for c in s["counters"] if c["key"] == "created")

    async def main() -> tuple[str | None, dict, int, dict, int]:
        transport = WebsocketsTransport(
            url=f"ws://{server.address}/graphql", init_payload={"authorization": f"Bearer {server.token}"}
        )
        assert transport.adapter.subprotocols == ["graphql-ws", "graphql-transport-ws"]  # its default order
        async with Client(transport=transport) as session:
            viewer = await session.execute(gql("{ viewer { username } }"))
            counters = session.subscribe(library)
            before = created(await anext(counters))
            added = await session.execute(add)
            after = created(await anext(counters))
            await counters.aclose()
            await session.execute(
                GraphQLRequest(
                    gql("mutation($id: ID!) { deleteSource(id: $id) { __typename } }"),
                    variable_values={"id": added["addSource"]["id"]},
                )
            )
            return transport.subprotocol, viewer, before, added, after

    subprotocol, viewer, before, added, after = asyncio.run(main())
    assert subprotocol == "graphql-transport-ws"
    assert viewer == {"viewer": {"username": "demo"}}
    assert added["addSource"]["country"] == "Default transport"
    assert after == before + 1


# The GraphQL-over-HTTP spec's reference audit (graphql-http's serverAudits)

AUDIT_PACKAGES = ["graphql-http@1.23.1", "graphql@16.15.0"]
AUDIT = """
import { auditServer } from "graphql-http";
const results = await auditServer({ url: process.env.GRAPHQL_URL });
console.log(JSON.stringify(results.map((r) => ({ name: r.name, status: r.status, reason: r.reason ?? null }))));
"""


@pytest.fixture(scope="module")
def audit_script(tmp_path_factory: pytest.TempPathFactory) -> NodeRecipe:
    """Install graphql-http (the spec's reference implementation) and its audit script into a new folder."""
    node, npm = _node_and_npm()
    folder = tmp_path_factory.mktemp("graphql-http-audit")
    _npm_install(npm, folder, AUDIT_PACKAGES)
    script = folder / "audit.mjs"
    script.write_text(AUDIT)
    return NodeRecipe(node=node, script=script)


def test_the_graphql_over_http_audit_passes_every_check_without_a_warning(
    audit_script: NodeRecipe, server: DemoServer
) -> None:
    result = audit_script.run({"GRAPHQL_URL": f"http://{server.address}/graphql"})
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    audits = json.loads(result.stdout)
    print(f"graphql-http audit: {len(audits)} checks, {sum(a['status'] == 'ok' for a in audits)} ok")
    assert len(audits) >= 60
    assert [a for a in audits if a["status"] != "ok"] == []
