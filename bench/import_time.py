"""import_time: a fresh ``python -c "import twostep"`` against ``import pyotp, argon2``.

Each sample is a whole new interpreter, started alternately for each side, so the
figure includes the interpreter's own start-up on both sides. Byte code is cached
(in a temporary ``PYTHONPYCACHEPREFIX``) even where ``PYTHONDONTWRITEBYTECODE`` is
set, as it is for a package installed from a wheel: otherwise ``twostep`` would be
compiled from source at every start while pyotp and argon2 are not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, interleave


def _run(statement: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, env=env)
    return time.perf_counter() - start


def main(quick: bool) -> list[Figure]:
    rounds = 9 if quick else 31
    with tempfile.TemporaryDirectory(prefix="twostep-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        base, meas = interleave(
            [
                lambda: _run("import pyotp, argon2", env),
                lambda: _run("import twostep", env),
            ],
            rounds,
            warmup=2,
        )
    return [Figure("import_time", base, meas, 1.5)]


if __name__ == "__main__":
    for figure in main("--quick" in sys.argv):
        print(figure.line(), flush=True)
