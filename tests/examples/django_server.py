"""Serves examples/django_app on 127.0.0.1 for the browser test, as its README sets it up.

Run as ``python -m tests.examples.django_server OWNER PASSWORD`` with the example's
environment (``DJANGO_DATABASE``, ``TWOSTEP_DATABASE``...): it migrates Django's
database, runs ``manage.py twostep init`` and ``twostep create-account``, creates
the Django superuser OWNER, then prints the port it listens on and serves until killed.
"""

from __future__ import annotations

import io
import os
import sys


def main(owner: str, password: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_app.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    call_command("migrate", verbosity=0, interactive=False)
    call_command("twostep", "init", stdout=io.StringIO())
    account = io.StringIO()
    call_command("twostep", "create-account", "Acme", stdout=account)
    settings.TWOSTEP["ACCOUNT_ID"] = account.getvalue().strip()  # as TWOSTEP_ACCOUNT_ID would
    get_user_model().objects.create_superuser(owner, f"{owner}@acme.example", password)

    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(get_wsgi_application())
    sys.stdout.write(f"{server.server_port}\n")  # the test reads the port here
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
