"""The adapters' catalogues: every message translated, compiled, and chosen per request."""

from __future__ import annotations

import gettext
import runpy
from pathlib import Path
from typing import Any

import pytest

import twostep as ts
from twostep.integrations import _i18n

ROOT = Path(__file__).resolve().parent.parent.parent
TOOL: dict[str, Any] = runpy.run_path(str(ROOT / "scripts" / "translations.py"))


def test_every_shipped_language_has_a_catalogue() -> None:
    shipped = {po.parent.parent.name for po in TOOL["catalogues"]()}
    assert shipped == set(_i18n.LANGUAGES[1:])
    assert _i18n.LANGUAGES[0] == "en"  # the source language needs no catalogue


def test_the_adapters_say_enough_to_be_worth_a_catalogue() -> None:
    found = TOOL["messages"]()
    assert len(found) > 100
    assert "Email or password is wrong." in found  # from a Python module
    assert "Turn on two-step verification" in found  # from a template


@pytest.mark.parametrize("language", _i18n.LANGUAGES[1:])
def test_every_message_is_translated_with_the_same_placeholders(language: str) -> None:
    # R114
    po = _i18n.LOCALE_DIR / language / "LC_MESSAGES" / "twostep.po"
    assert TOOL["problems"](po) == []


@pytest.mark.parametrize("language", _i18n.LANGUAGES[1:])
def test_the_compiled_catalogue_is_the_po_file_compiled(language: str) -> None:
    po = _i18n.LOCALE_DIR / language / "LC_MESSAGES" / "twostep.po"
    entries = TOOL["parse_po"](po.read_text())
    assert po.with_suffix(".mo").read_bytes() == TOOL["mo_bytes"](entries)
    catalogue = _i18n.translations(language)
    for english, translated in entries.items():
        if english:
            assert catalogue.gettext(english) == translated


def test_the_po_reader_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        TOOL["parse_po"]("msgid 'single quotes'\n")


def test_a_catalogue_with_an_untranslated_or_stale_message_is_reported(tmp_path: Path) -> None:
    messages = TOOL["messages"]()
    po = tmp_path / "twostep.po"
    lines = [f"msgid {TOOL['_quote'](m)}\nmsgstr {TOOL['_quote'](m)}\n" for m in messages[1:]]
    lines.append('msgid "gone"\nmsgstr "parti"\n')
    lines.append('msgid "Attempts left: %(left)d."\nmsgstr "Essais : %(n)d."\n')
    po.write_text("\n".join(lines))
    found = TOOL["problems"](po)
    assert any("not translated" in p and messages[0] in p for p in found)
    assert any("not used" in p and "gone" in p for p in found)
    assert any("placeholders differ" in p for p in found)


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("fr", "fr"),
        ("fr-CH, fr;q=0.9, en;q=0.8", "fr"),
        ("en-GB,en;q=0.9,fr;q=0.8", "en"),
        ("de-DE, fr;q=0.5", "fr"),  # German is not shipped: the next one asked for
        ("de, es", "en"),
        ("fr;q=0, en", "en"),  # q=0 refuses French
        ("fr;q=nonsense", "en"),
        ("en, fr", "en"),  # among equals, the first listed
        ("*", "en"),
    ],
)
def test_accept_language_picks_a_shipped_language(header: str | None, language: str) -> None:
    assert _i18n.negotiate(header) == language


def test_a_language_without_a_catalogue_is_english() -> None:
    assert isinstance(_i18n.translations("de"), gettext.NullTranslations)
    assert _i18n.translations("de").gettext("Security") == "Security"
    assert _i18n.translations("fr").gettext("Security") == "Sécurité"


ERRORS: list[tuple[ts.TwoStepError, str, str]] = [
    (ts.Throttled("x", retry_after=7, scope="user"), "Try again in 7 seconds", "dans 7 secondes"),
    (ts.InvalidCode("x", reason="wrong", attempts_left=2), "Attempts left: 2.", "restants : 2."),
    (ts.InvalidCode("x", reason="wrong", attempts_left=-1), "Attempts left: 0.", "restants : 0."),
    (ts.InvalidCode("x", reason="malformed", attempts_left=2), "not a code", "pas un code"),
    (ts.InvalidCode("x", reason="replayed"), "already used", "déjà servi"),
    (ts.InvalidCredentials("x"), "Email or password is wrong.", "mot de passe est erroné"),
    (ts.ChallengeExpired("x", reason="too_many_attempts"), "Too many wrong", "Trop de codes"),
    (ts.ChallengeExpired("x", reason="expired"), "took too long", "trop de temps"),
    (ts.NotAllowed("x", reason="owner_only", rule="R22"), "Only an owner", "Seul un"),
    (ts.NotAllowed("x", reason="new_reason", rule="R1"), "Not allowed (new_reason)", "Non autor"),
    (ts.SessionInvalid("x", reason="two_factor_required"), "Log in to set", "Connectez-vous"),
    (ts.SessionInvalid("x", reason="unknown"), "Please log in.", "Veuillez vous connecter."),
    (ts.UnknownUser("x"), "No such user.", "Cet utilisateur n’existe pas."),
    (ts.EmailTaken("x"), "already taken", "déjà pris"),
    (ts.InvalidInput("x", reason="password_too_short"), "too short", "trop court"),
    (ts.InvalidInput("x", reason="odd"), "not valid (odd)", "pas valide (odd)"),
    (ts.StoreError("x"), "Something went wrong (store)", "Une erreur s’est produite (store)"),
]


@pytest.mark.parametrize(("error", "english", "french"), ERRORS)
def test_r61_each_refusal_reads_in_english_and_in_french(
    error: ts.TwoStepError, english: str, french: str
) -> None:
    assert english in _i18n.message(error, _i18n.translations("en"))
    assert french in _i18n.message(error, _i18n.translations("fr"))
    assert str(error) == "x"  # the core's own text stays as it was: for developers
