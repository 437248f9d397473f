"""The glue as a Django app: every new Django user gets a twostep user (R93)."""

from __future__ import annotations

from django.apps import AppConfig


class TwoStepGlue(AppConfig):
    name = "tests.django_project"
    label = "twostep_glue"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save

        from .glue import create_twostep_user

        post_save.connect(create_twostep_user, sender=get_user_model())
