"""The README's examples, run as a newcomer would run them (issue #18).

README.md marks each command block with ``<!-- example: NAME -->`` and the block of what it
prints with ``<!-- answer: NAME -->``; ``(background)`` marks a command that keeps running (the
subscription) and whose answer comes later, ``(again)`` an answer for which the command runs a
second time. This test runs the blocks in the README's order, through bash, against a real
daemon on config.example.toml (its NAS, secret and tokens; only the ports are free ones and a NAS
simulator answers the Disconnect-Requests), with real curl, radclient and python3, and compares
each output with its answer, JSON value by JSON value: ``"…"`` in an answer matches any value.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyrad.dictionary import Dictionary

from radtrack import config
from radtrack.api.settings import EXAMPLE_TOKENS
from radtrack.daemon import Daemon
from tests.conftest import example_config, udp_port
from tests.httpclient import graphql, http
from tests.nas import Nas

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = re.compile(
    r"<!-- (example|answer): ([a-z-]+)(?: \((background|again)\))? -->\n```(\w*)\n(.*?)```",
    re.DOTALL,
)
# what the README must go on showing (a removed example fails here, not silently)
EXAMPLES = {"start", "online", "upsert-users", "device-limit", "events", "disconnect", "stop"}
EXAMPLES |= {"history"}
ANY = "…"  # in an answer: any value
RECEIVED = "Received Accounting-Response"  # what the README says radclient prints
SECRET = "radtrack-example-secret"


@dataclass(frozen=True)
class Block:
    kind: str  # "example" or "answer"
    name: str
    flag: str  # "background", "again" or ""
    text: str


def readme_blocks(text: str) -> list[Block]:
    return [Block(kind, name, flag or "", body) for kind, name, flag, _, body in MARK.findall(text)]


def matches(answer: Any, actual: Any) -> bool:
    """``actual`` is ``answer``, where an ANY in the answer stands for any one value."""
    if answer == ANY:
        return True
    if isinstance(answer, dict):
        return (
            isinstance(actual, dict)
            and answer.keys() == actual.keys()
            and all(matches(answer[key], actual[key]) for key in answer)
        )
    if isinstance(answer, list):
        return (
            isinstance(actual, list)
            and len(answer) == len(actual)
            and all(matches(a, b) for a, b in zip(answer, actual, strict=True))
        )
    return type(answer) is type(actual) and bool(answer == actual)


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_matcher_takes_only_what_the_answer_shows() -> None:
    assert matches({"id": ANY, "n": [1, True]}, {"id": "x1", "n": [1, True]})
    assert not matches({"id": ANY}, {"id": "x1", "more": 1})  # a field the README lacks
    assert not matches({"n": 1}, {"n": 1.0}) and not matches({"n": 1}, {"n": True})
    assert not matches([1, 2], [1]) and not matches({"a": None}, {"a": "x"})


class Shell:
    """Runs the README's commands with bash; the daemon's free ports replace the example's."""

    def __init__(self, daemon: Daemon, bin_dir: Path) -> None:
        assert daemon.http_address is not None
        self.ports = {
            "127.0.0.1:8080": f"127.0.0.1:{daemon.http_address[1]}",
            "127.0.0.1:1813": f"127.0.0.1:{udp_port(daemon)}",
        }
        # the README's python3 is this interpreter (its websockets); output unbuffered, as on
        # a terminal; loopback never through a proxy
        bin_dir.mkdir()
        (bin_dir / "python3").symlink_to(sys.executable)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
        }

    def localize(self, command: str) -> str:
        assert any(port in command for port in self.ports), f"no example address in {command}"
        for port, free in self.ports.items():
            command = command.replace(port, free)
        return command

    async def start(self, command: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            self.localize(command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )

    async def run(self, command: str) -> str:
        proc = await self.start(command)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, f"{command}\nexit {proc.returncode}: {err.decode()}"
        return out.decode()


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_the_readme_examples_answer_what_the_readme_says(
    daemon_factory: Callable[..., Any], dictionary: Dictionary, tmp_path: Path
) -> None:
    for tool in ("curl", "radclient"):  # never skipped: the README tells newcomers to use them
        assert shutil.which(tool), f"{tool} is not installed (.ci/run installs it)"
    blocks = readme_blocks(README.read_text())
    examples = {block.name: block for block in blocks if block.kind == "example"}
    assert EXAMPLES <= examples.keys(), f"README lost {EXAMPLES - examples.keys()}"
    for block in blocks:
        assert block.kind == "example" or block.name in examples, f"answer without {block.name}"

    loop = asyncio.get_running_loop()
    nas_transport, nas = await loop.create_datagram_endpoint(
        lambda: Nas(dictionary, "ack", SECRET), local_addr=("127.0.0.1", 0)
    )
    try:
        nas_port = nas_transport.get_extra_info("sockname")[1]
        path = example_config(
            tmp_path / "example",
            **{
                '# coa_address = "127.0.0.1"': 'coa_address = "127.0.0.1"',
                "coa_port = 3799": f"coa_port = {nas_port}",
            },
        )
        daemon: Daemon = await daemon_factory(config.load(path))
        await run_blocks(blocks, daemon, Shell(daemon, tmp_path / "bin"))
    finally:
        nas_transport.close()
    assert nas.session_ids() == ["sess_live_abc123"]  # the disconnect reached the NAS


@pytest.mark.asyncio
async def test_the_example_config_serves_the_query_page(
    daemon_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """What the README says of GET /graphql on the example config (and of production's 405)."""
    daemon: Daemon = await daemon_factory(config.load(example_config(tmp_path / "example")))
    assert daemon.http_address is not None
    port = daemon.http_address[1]
    page = await http(port, "GET", "/graphql", headers=[("Accept", "text/html")])
    assert page.status == 200 and b"<title>radtrack GraphQL</title>" in page.body
    assert b"change-me" not in page.body  # the page asks for the token
    reply = await graphql(port, "{ __schema { queryType { name } } }", EXAMPLE_TOKENS[0])
    assert reply.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    production = await daemon_factory(api={"explorer": False, "introspection": False})
    assert production.http_address is not None
    closed = await http(
        production.http_address[1], "GET", "/graphql", headers=[("Accept", "text/html")]
    )
    assert closed.status == 405


async def run_blocks(blocks: list[Block], daemon: Daemon, shell: Shell) -> None:
    """Each example in turn; each answer compared with what its example printed."""
    commands: dict[str, str] = {}
    outputs: dict[str, str] = {}
    running: dict[str, asyncio.subprocess.Process] = {}
    try:
        for block in blocks:
            if block.kind == "example":
                commands[block.name] = block.text
                if "radclient" in block.text:
                    output = await shell.run(block.text)
                    assert RECEIVED in output, output
                elif block.flag == "background":
                    running[block.name] = await subscribed(daemon, shell, block)
                else:
                    outputs[block.name] = await shell.run(block.text)
                continue
            answer = json_lines(block.text)
            if block.flag == "again":
                output = await shell.run(commands[block.name])
            elif block.name in running:
                output = await printed(running.pop(block.name), len(answer))
            else:
                output = outputs.pop(block.name)
            actual = json_lines(output)
            assert matches(answer, actual), f"{block.name}: README says\n{answer}\ngot\n{actual}"
        assert not outputs and not running, f"examples without an answer: {outputs} {running}"
    finally:
        for proc in running.values():
            proc.kill()
            await proc.wait()


async def subscribed(daemon: Daemon, shell: Shell, block: Block) -> asyncio.subprocess.Process:
    """The block started, once the daemon's event hub has its subscription."""
    assert daemon.app is not None
    hub = daemon.app.events
    before = len(hub)
    proc = await shell.start(block.text)
    try:
        await until(
            lambda: len(hub) > before or proc.returncode is not None, f"{block.name} subscribes"
        )
        assert proc.returncode is None, f"{block.name} exited: {await proc.communicate()}"
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc


async def printed(proc: asyncio.subprocess.Process, lines: int) -> str:
    """The first ``lines`` lines a running block printed; then it is stopped."""
    assert proc.stdout is not None
    try:
        return b"".join(
            [await asyncio.wait_for(proc.stdout.readline(), 10) for _ in range(lines)]
        ).decode()
    finally:
        proc.kill()
        await proc.wait()
