"""What the wheel must carry besides modules: py.typed, the Django app's files.

CI runs the suite against the installed wheel, so a file left out of it fails here.
"""

from __future__ import annotations

from importlib import resources

import pytest

TEMPLATES = (
    "base.html",
    "login.html",
    "verify.html",
    "backup_codes.html",
    "security.html",
    "setup.html",
    "administration.html",
    "activity.html",
    "error.html",
)


def test_the_package_is_typed() -> None:
    assert resources.files("twostep").joinpath("py.typed").is_file()


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_django_templates_are_installed(name: str) -> None:
    app = resources.files("twostep.integrations.django")
    assert "{%" in app.joinpath("templates", "twostep", name).read_text(encoding="utf-8")


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("kind", ["po", "mo"])
def test_the_django_catalogues_are_installed(language: str, kind: str) -> None:
    app = resources.files("twostep.integrations.django")
    catalogue = app.joinpath("locale", language, "LC_MESSAGES", f"django.{kind}")
    assert catalogue.is_file()
    assert len(catalogue.read_bytes()) > 1000


def test_importing_twostep_imports_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, twostep, twostep.integrations; "
        "print(sorted(m for m in ('django', 'flask', 'fastapi') if m in sys.modules))"
    )
    done = subprocess.run(  # noqa: S603 (our own interpreter)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
