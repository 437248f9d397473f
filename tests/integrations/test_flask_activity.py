"""The Flask Activity page (R60, R76): who did what to whom, by email, in the reader's language."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

import twostep as ts
from twostep.integrations.flask import _views

from .conftest import MEMBER, OWNER, PASSWORD
from .test_flask import client, host_app, post, text

Row = tuple[str, ...]  # when, who, what, to whom, outcome, why


@pytest.fixture
def app(host_service: ts.TwoStep) -> Flask:
    return host_app(host_service)


def rows(page: str) -> list[Row]:
    """The Activity table's rows, each cell's text, the time left out."""
    table = page.split('<table id="activity">')[1].split("</table>", maxsplit=1)[0]
    found = []
    for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.DOTALL):
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td.*?</td>", row)]
        if cells:
            found.append(tuple(cells[1:]))
    return found


def owner_client(app: Flask, language: str | None = None) -> FlaskClient:
    c = client(app, language)
    post(c, "/login", email=OWNER, password=PASSWORD)
    return c


def member_id(service: ts.TwoStep) -> str:
    owner = service.login(OWNER, PASSWORD)
    assert isinstance(owner, ts.LoggedIn)
    (found,) = (u for u in service.list_users(owner.session).users if u.email == MEMBER)
    return found.user_id


def test_r60_the_activity_names_the_actor_and_the_target_by_email(
    app: Flask, host_service: ts.TwoStep
) -> None:
    reset = host_service.begin_password_reset(MEMBER)
    host_service.complete_password_reset(reset.token, "a brand new password")
    c = owner_client(app)
    post(c, f"/admin/users/{member_id(host_service)}/deactivate")

    shown = rows(text(c.get("/admin/activity")))

    assert ("anonymous", "password_reset", MEMBER, "success", "all_sessions_ended") in shown
    assert ("anonymous", "password_reset_started", MEMBER, "success", "") in shown
    assert (OWNER, "user_deactivated", MEMBER, "success", "") in shown
    assert (OWNER, "login", "", "success", "") in shown  # one's own: no one else's
    assert ("operator", "user_created", MEMBER, "success", "") in shown
    assert ("operator", "account_created", "", "success", "") in shown


def test_r60_a_deleted_user_is_named_by_id(app: Flask, host_service: ts.TwoStep) -> None:
    c = owner_client(app)
    gone = member_id(host_service)
    post(c, f"/admin/users/{gone}/delete", confirm="yes")

    shown = rows(text(c.get("/admin/activity")))

    # The deletion's reason keeps the email the user had.
    assert (OWNER, "user_deleted", f"deleted user {gone}", "success", MEMBER) in shown
    assert ("operator", "user_created", f"deleted user {gone}", "success", "") in shown


def test_r114_the_activity_reads_in_french(app: Flask, host_service: ts.TwoStep) -> None:
    c = owner_client(app, "fr")
    gone = member_id(host_service)
    post(c, f"/admin/users/{gone}/delete", confirm="yes")
    host_service.begin_password_reset(OWNER)

    page = text(c.get("/admin/activity"))

    assert "<th>Qui</th>" in page
    assert "<th>À qui</th>" in page
    shown = rows(page)
    assert ("opérateur", "user_created", f"utilisateur supprimé {gone}", "success", "") in shown
    assert ("anonyme", "password_reset_started", OWNER, "success", "") in shown


def test_r76_older_events_are_a_page_away(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_views, "EVENTS_PER_PAGE", 2)
    c = owner_client(app)
    first = text(c.get("/admin/activity"))
    assert len(rows(first)) == 2
    older = re.search(r'href="([^"]+)" id="next-page"', first)
    assert older is not None

    second = text(c.get(older.group(1)))

    assert len(rows(second)) == 2
    assert set(rows(first)).isdisjoint(rows(second))
    refused = c.get("/admin/activity?after=forged", follow_redirects=True)
    assert refused.request.path == "/admin/activity"
    assert "That input is not valid" in text(refused)


def test_r50_a_member_cannot_open_the_activity(app: Flask) -> None:
    c = client(app)
    post(c, "/login", email=MEMBER, password=PASSWORD)
    assert c.get("/admin/activity").status_code == 403
