"""A minimal Django project whose users log in with Django, then with twostep (R93, R94).

It installs the app ``twostep.integrations.django`` as docs/guide.md shows it, and
tests/test_django.py drives it with Django's test client. :func:`setup` readies Django
once.
"""

from __future__ import annotations

import os


def setup() -> None:
    """Point Django at these settings and load the project; once per process."""
    import django
    from django.apps import apps

    if apps.ready:
        return
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django_project.settings"
    django.setup()
