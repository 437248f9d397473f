"""``manage.py twostep COMMAND ...``: the ``twostep`` command line on the project's database.

Every command of ``twostep --help`` (``init``, ``create-account``, ``reset-2fa``,
``list-users``, ``audit``...) runs with ``--database`` and ``--issuer`` taken from
``settings.TWOSTEP``. One more, ``import-django-users``, gives every active Django user
a twostep user (R93): the same id, their email, no twostep password.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

import twostep as ts
from twostep import cli

from ... import conf
from ...users import import_user

IMPORT = "import-django-users"


class Command(BaseCommand):
    """``manage.py twostep COMMAND ...``."""

    help = "twostep's command line on the project's twostep database (see `twostep --help`)"

    def add_arguments(self, parser: CommandParser) -> None:
        """Everything after ``twostep`` goes to the ``twostep`` command line."""
        parser.add_argument("words", nargs=argparse.REMAINDER, help="a twostep command")

    def handle(self, *_: Any, **options: Any) -> None:  # noqa: ANN401 (Django's signature)
        """Run the command on the project's database, or import the Django users."""
        words: list[str] = list(options["words"])
        if words[:1] == [IMPORT]:
            self._import_users()
            return
        settings = conf.config()
        argv = ["--database", settings.database, "--issuer", settings.issuer, *words]
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(argv, out=out, err=err, stdin=sys.stdin)
        self.stdout.write(out.getvalue(), ending="")
        self.stderr.write(err.getvalue(), ending="")
        if status:
            msg = f"twostep exited with status {status}"
            raise CommandError(msg, returncode=status)

    def _import_users(self) -> None:
        imported = known = failed = 0
        for user in get_user_model().objects.filter(is_active=True).order_by("pk"):
            try:
                if import_user(user):
                    imported += 1
                else:
                    known += 1
            except ts.TwoStepError as error:
                failed += 1
                self.stderr.write(f"user {user.pk}: {error}")
        self.stdout.write(f"{imported} user(s) imported, {known} had one, {failed} failed")
        if failed:
            msg = f"{failed} user(s) not imported"
            raise CommandError(msg, returncode=1)
