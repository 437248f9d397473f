"""No framework in the core: ``import twostep`` loads neither Flask nor FastAPI."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("flask", "fastapi", "starlette", "jinja2", "werkzeug", "pydantic", "django")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run(  # noqa: S603 (our own interpreter)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_importing_twostep_or_its_integrations_package_loads_no_framework() -> None:
    for statement in ("import twostep", "import twostep.integrations", "import twostep as ts"):
        modules = loaded_after(statement)
        assert not {m.split(".")[0] for m in modules} & set(FRAMEWORKS), statement
        assert "asyncio" not in modules, statement  # AsyncTwoStep loads it on first use


def test_each_adapter_loads_its_own_framework_only() -> None:
    flask_side = {m.split(".")[0] for m in loaded_after("import twostep.integrations.flask")}
    assert "flask" in flask_side
    assert "fastapi" not in flask_side
    fastapi_side = {m.split(".")[0] for m in loaded_after("import twostep.integrations.fastapi")}
    assert "fastapi" in fastapi_side
    assert "flask" not in fastapi_side
