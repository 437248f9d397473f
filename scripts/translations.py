"""The catalogues of twostep's adapters: list what they say, check and compile the .po files.

    python scripts/translations.py extract   # the messages, as a .pot on stdout
    python scripts/translations.py check     # every message translated in every .po
    python scripts/translations.py compile   # each .po to its .mo, beside it

Messages are the first argument of ``_``, ``N_`` and ``gettext`` in the adapters'
Python modules and of ``_`` in their templates. No tool beyond Python is needed:
the .mo files are written here, in GNU gettext's format, which :mod:`gettext` reads.
"""

from __future__ import annotations

import ast
import re
import struct
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "twostep" / "integrations"
LOCALE = PACKAGE / "locale"
MARKERS = {"_", "N_", "gettext"}
TEMPLATE_CALL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def messages() -> list[str]:
    """Every message the adapters show, in a stable order."""
    found: dict[str, None] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name | ast.Attribute)
                and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in MARKERS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found[node.args[0].value] = None
    for path in sorted(PACKAGE.rglob("*.html")):
        for double, single in TEMPLATE_CALL.findall(path.read_text()):
            found[re.sub(r"\\(.)", r"\1", double or single)] = None
    return list(found)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def pot() -> str:
    """The template catalogue: every message with an empty translation."""
    head = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
    return head + "".join(f'\nmsgid {_quote(m)}\nmsgstr ""\n' for m in messages())


def parse_po(text: str) -> dict[str, str]:
    """The translations of a .po file (msgid to msgstr; the header under ``""``)."""
    entries: dict[str, str] = {}
    key: str | None = None
    parts: dict[str, list[str]] = {"msgid": [], "msgstr": []}

    def flush() -> None:
        if parts["msgid"] or parts["msgstr"]:
            entries["".join(parts["msgid"])] = "".join(parts["msgstr"])
        parts["msgid"], parts["msgstr"] = [], []

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word in parts:
            if word == "msgid":
                flush()
            key, line = word, rest
        if key is None or not line.startswith('"'):
            msg = f"cannot read the .po line {raw!r}"
            raise ValueError(msg)
        parts[key].append(ast.literal_eval(line))
    flush()
    return entries


def mo_bytes(entries: dict[str, str]) -> bytes:
    """A GNU .mo file holding ``entries`` (untranslated ones left out)."""
    pairs = sorted((k.encode(), v.encode()) for k, v in entries.items() if v)
    count = len(pairs)
    ids_at = 7 * 4
    strs_at = ids_at + count * 8
    data_at = strs_at + count * 8
    blob = b""
    id_table: list[int] = []
    str_table: list[int] = []
    for table, index in ((id_table, 0), (str_table, 1)):
        for pair in pairs:
            text = pair[index]
            table += [len(text), data_at + len(blob)]
            blob += text + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, count, ids_at, strs_at, 0, data_at)
    return (
        header
        + struct.pack(f"<{len(id_table)}I", *id_table)
        + struct.pack(f"<{len(str_table)}I", *str_table)
        + blob
    )


def catalogues() -> list[Path]:
    """The .po file of every shipped language."""
    return sorted(LOCALE.glob("*/LC_MESSAGES/twostep.po"))


def problems(po: Path) -> list[str]:
    """What is missing or wrong in one .po: untranslated, stale, placeholders differing."""
    entries = parse_po(po.read_text())
    wanted = messages()
    found = [f"{po}: not translated: {m!r}" for m in wanted if not entries.get(m)]
    found += [f"{po}: not used: {m!r}" for m in entries if m and m not in wanted]
    found += [
        f"{po}: placeholders differ: {m!r}"
        for m in wanted
        if entries.get(m)
        and sorted(PLACEHOLDER.findall(m)) != sorted(PLACEHOLDER.findall(entries[m]))
    ]
    return found


def main(command: str) -> int:
    """Run ``command``; the exit status."""
    if command == "extract":
        sys.stdout.write(pot())
        return 0
    if command == "check":
        found = [p for po in catalogues() for p in problems(po)]
        sys.stdout.write("".join(f"{p}\n" for p in found))
        return 1 if found else 0
    if command == "compile":
        for po in catalogues():
            po.with_suffix(".mo").write_bytes(mo_bytes(parse_po(po.read_text())))
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
