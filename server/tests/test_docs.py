"""The shell examples of README.md and docs/*.md run, in order, against a live server.

The convention for fenced code blocks in those files:

- ```sh — commands a reader pastes. Each file's `sh` blocks run here in document order, in one
  `bash -euo pipefail` session per file (so a variable one block sets reaches the next), from the
  repository root, against a fresh server: gunicorn on a new SQLite database (`DATABASE_URL`, so
  `.venv/bin/python manage.py …` reaches it too) with `PORT` its port and `BASE_URL` its address,
  and a local echo receiver (`make receiver`'s) with `RECEIVER_PORT` its port. Each file starts from
  nothing else: its blocks set what they use (the README: `DP`, `API_TOKEN`, `ACCOUNT_ID` …).
  Every block must exit 0, and `curl` fails on an HTTP error status (it runs with
  `--fail-with-body`, and a `--max-time`), so an example the API refuses fails here, naming the
  file and the line of the block.
- ```console — commands shown but not run here (they serve until stopped, need production, or take
  minutes: `make run`, `make serve`, benchmarks); each is reported as a skipped test naming its file
  and line.
- any other language (`json`, `python`, `text`, `dotenv`, …) — not commands.

Every block names its language, so that none escapes this test unnoticed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.tests.conftest import ROOT, manage, web_env
from server.tests.helpers import Block, fenced_blocks

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN, SHOWN = "sh", "console"
# Each file's examples together take seconds; these bound a hung one (a request, then the session).
CURL_MAX_TIME = 30
SESSION_TIMEOUT = 90


def blocks_in(language: str, docs: list[Path] = DOCS) -> list[Block]:
    return [block for doc in docs for block in fenced_blocks(doc) if block.language == language]


def session_script(doc_blocks: list[Block], progress: Path) -> str:
    """One bash script running the blocks in order, writing where it is to `progress` first."""
    parts = [f'curl() {{ command curl --fail-with-body --max-time {CURL_MAX_TIME} "$@"; }}']
    for block in doc_blocks:
        parts += [f"echo {block.where} > {progress}", block.code]
    parts.append(f"echo done > {progress}")
    return "\n".join(parts) + "\n"


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_every_code_block_names_its_language(doc):
    """No fenced block is left without a language, so none escapes the runner unnoticed."""
    assert [block.where for block in fenced_blocks(doc) if not block.language] == []


@pytest.mark.parametrize("block", blocks_in(SHOWN), ids=lambda block: block.where)
def test_console_blocks_are_not_run(block):
    """A ```console block is shown to readers and not run: reported here as skipped."""
    pytest.skip(f"```console block at {block.where}: shown, not run")


@pytest.fixture
def echo_receiver(services, tmp_path) -> tuple[int, Path]:
    """`make receiver`'s echo server on a free port: (its port, the file it prints to)."""
    argv = [sys.executable, "-m", "server.receiver", "--port", "0"]
    service = services(argv, dict(os.environ), lambda log: "Receiving on" in log)
    return int(re.search(r":(\d+)/", service.log.read_text())[1]), service.log


@pytest.mark.parametrize(
    "doc",
    [doc for doc in DOCS if blocks_in(RUN, [doc])],
    ids=lambda doc: str(doc.relative_to(ROOT)),
)
def test_sh_blocks_run_in_order_against_a_live_server(doc, gunicorn, echo_receiver, tmp_path):
    """Every ```sh block of the file, pasted in order into one shell, exits 0."""
    receiver_port, received = echo_receiver
    database_url = f"sqlite:///{tmp_path / 'docs.sqlite3'}"
    env = web_env(database_url=database_url)
    manage("migrate", "--noinput", env=env)
    server = gunicorn(database_url=database_url)
    port = re.search(r":(\d+)$", server.url)[1]
    progress, script = tmp_path / "progress", tmp_path / "session.sh"
    script.write_text(session_script(blocks_in(RUN, [doc]), progress))
    try:
        finished = subprocess.run(  # noqa: S603 (our own script, from our own docs)
            ["bash", "-euo", "pipefail", str(script)],  # noqa: S607 (bash from PATH, as a reader's shell)
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**env, "PORT": port, "BASE_URL": server.url, "RECEIVER_PORT": str(receiver_port)},
            capture_output=True,
            text=True,
            timeout=SESSION_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the ```sh block at {progress.read_text().strip()} ran over {SESSION_TIMEOUT}s")
    where = progress.read_text().strip()
    assert (finished.returncode, where) == (0, "done"), (
        f"the ```sh block at {where} failed (exit {finished.returncode}):\n"
        f"{finished.stdout[-3000:]}\n{finished.stderr[-3000:]}"
    )
    if doc.name == "README.md":
        assert "webhook-signature: v1," in received.read_text(), "the README's ingest reached no receiver"
