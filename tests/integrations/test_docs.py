"""docs/integrations.md: each adapter in under 30 lines of host code, and that code runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import twostep as ts
from tests.test_docs import README, ROOT, blocks, test_local_links_resolve

INTEGRATIONS = ROOT / "docs" / "integrations.md"


def host_code(adapter: str) -> str:
    (code,) = [b for b in blocks(INTEGRATIONS, "python") if f"twostep.integrations.{adapter}" in b]
    return code


@pytest.fixture
def host_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the host's SQLite file lands here
    monkeypatch.setenv("TWOSTEP_KEYS", ts.AESGCMKeyring.new_key_line())
    monkeypatch.delenv("TWOSTEP_KEY_FILE", raising=False)
    monkeypatch.setenv("FLASK_SECRET_KEY", "docs-secret")
    return tmp_path


@pytest.mark.parametrize("adapter", ["flask", "fastapi"])
def test_each_adapter_takes_under_30_lines_of_host_code(adapter: str) -> None:
    assert len(host_code(adapter).splitlines()) < 30


def test_the_flask_host_code_serves_the_pages(host_dir: Path) -> None:
    scope: dict[str, object] = {"__name__": "docs_flask_host"}
    exec(host_code("flask"), scope)  # noqa: S102 (our own documentation)
    c = scope["app"].test_client()  # type: ignore[attr-defined]
    c.environ_base["wsgi.url_scheme"] = "https"
    assert c.get("/").headers["Location"] == "/login"  # login_required
    assert 'name="password"' in c.get("/login").get_data(as_text=True)
    assert (host_dir / "twostep.db").exists()


def test_the_fastapi_host_code_serves_the_api(host_dir: Path) -> None:
    scope: dict[str, object] = {"__name__": "docs_fastapi_host"}
    exec(host_code("fastapi"), scope)  # noqa: S102 (our own documentation)
    c = TestClient(scope["app"])  # type: ignore[arg-type]
    assert c.get("/hello").status_code == 401
    refused = c.post("/login", json={"email": "nobody@host.example", "password": "x" * 12})
    assert refused.json()["error"] == "invalid_credentials"


def test_the_integrations_page_is_linked_and_its_links_resolve() -> None:
    assert "(docs/integrations.md)" in README.read_text()
    test_local_links_resolve(INTEGRATIONS)
