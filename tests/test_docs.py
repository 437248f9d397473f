"""The documentation cannot rot: its example runs, its names and links exist."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import twostep as ts
import twostep.testing
from twostep.cli import _parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
QUICKSTART = ROOT / "examples" / "quickstart.py"
API = ROOT / "docs" / "api.md"
GUIDE = ROOT / "docs" / "guide.md"
OUR_DOCS = [README, ROOT / "CHANGELOG.md", ROOT / "docs" / "index.md", API, GUIDE]

INSTALL_AND_DEMO = "python3 -m venv .venv && . .venv/bin/activate && pip install . && twostep demo"
INSTALL_AND_TEST = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest"
)


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", path.read_text(), flags=re.DOTALL | re.MULTILINE)


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    env.pop("TWOSTEP_KEYS", None)
    env.pop("TWOSTEP_KEY_FILE", None)
    return subprocess.run(  # noqa: S603 (our own interpreter)
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


# -- the README ---------------------------------------------------------------------------


def test_readme_has_exactly_the_two_one_line_setup_commands() -> None:
    assert [b.strip() for b in blocks(README, "sh")] == [INSTALL_AND_DEMO, INSTALL_AND_TEST]


def test_readme_test_command_is_the_one_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert INSTALL_AND_TEST in ci.splitlines()


def test_readme_example_is_examples_quickstart() -> None:
    (example,) = blocks(README, "python")
    assert example == QUICKSTART.read_text()


def test_readme_example_runs() -> None:
    (example,) = blocks(README, "python")
    done = run_python("-c", example)
    assert done.returncode == 0, done.stderr
    assert "code refused: replayed" in done.stdout  # R4
    assert "session ended: revoked" in done.stdout  # R21
    assert "not allowed: owner_only R22" in done.stdout  # R22


def test_examples_quickstart_runs() -> None:
    done = run_python(str(QUICKSTART))
    assert done.returncode == 0, done.stderr
    assert "backup codes left: 9" in done.stdout  # R5


def _readme_api_section() -> str:
    text = README.read_text()
    return text[text.index("## The API") : text.index("## Run it")]


def test_readme_api_table_lists_every_operation_of_twostep() -> None:
    table = [line for line in _readme_api_section().splitlines() if line.startswith("| `")]
    named = {m for line in table for m in re.findall(r"`?([a-z_]+)\(", line)}
    public = {
        name
        for name, member in inspect.getmembers(ts.TwoStep, inspect.isfunction)
        if not name.startswith("_")
    }
    assert public <= named, f"missing from the README's table: {public - named}"


def test_readme_api_table_names_only_real_operations() -> None:
    table = [line for line in _readme_api_section().splitlines() if line.startswith("| `")]
    for line in table:
        for name in re.findall(r"(?:^\| `|; `|\(then `)([a-z_]+)\(", line):
            assert hasattr(ts.TwoStep, name), name


# -- the reference -------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*ts.__all__, *twostep.testing.__all__])
def test_api_reference_documents_every_public_name(name: str) -> None:
    assert re.search(rf"`{re.escape(name)}[`(]", API.read_text()), name


@pytest.mark.parametrize(
    "method",
    [n for n, _ in inspect.getmembers(ts.TwoStep, inspect.isfunction) if not n.startswith("_")],
)
def test_api_reference_documents_every_operation(method: str) -> None:
    assert f"#### `{method}(" in API.read_text(), method


# -- the guide -------------------------------------------------------------------------------


def test_guide_quotes_the_default_settings() -> None:
    s = ts.Settings()
    guide = GUIDE.read_text()
    assert s.enrollment_ttl == timedelta(minutes=10)
    assert "10 minutes" in guide
    assert s.challenge_ttl == timedelta(minutes=5)
    assert "5 minutes" in guide
    assert s.session_ttl == timedelta(hours=12)
    assert "12 hours" in guide
    assert s.challenge_max_attempts == 5
    assert "die after 5 wrong codes" in guide
    assert s.code_throttle.base_delay == timedelta(seconds=2)
    assert s.code_throttle.max_delay == timedelta(hours=4)
    assert "up to 4 h" in guide


def test_guide_names_only_real_cli_commands() -> None:
    actions = [a for a in _parser()._actions if a.dest == "command"]
    commands = set(actions[0].choices or {})
    mentioned = set(re.findall(r"`twostep ([a-z][a-z0-9-]*)", GUIDE.read_text()))
    mentioned |= set(
        re.findall(r"^twostep ([a-z][a-z0-9-]*)", GUIDE.read_text(), flags=re.MULTILINE)
    )
    assert mentioned, "the guide shows the commands"
    assert mentioned <= commands, mentioned - commands
    assert {"init", "migrate", "reset-2fa", "rotate-key", "purge"} <= mentioned


def test_guide_design_choices_section_exists() -> None:
    assert "## Design choices" in GUIDE.read_text()


def test_changelog_keeps_unreleased_on_top() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[(.+?)\]", text, flags=re.MULTILINE)
    assert versions[0] == "Unreleased"
    assert "### Added" in text


# -- links ------------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)}


@pytest.mark.parametrize("doc", OUR_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # an external address
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        assert path.exists(), f"{doc.name} links to a missing {target}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{doc.name} links to a missing anchor {target}"
