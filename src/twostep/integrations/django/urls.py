"""The app's URLs: ``path("account/", include("twostep.integrations.django.urls"))``.

Names are in the ``twostep`` namespace: ``twostep:login``, ``twostep:verify``,
``twostep:logout``, ``twostep:security`` and ``twostep:administration``...
"""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "twostep"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("code/", views.verify, name="verify"),
    path("logout/", views.logout, name="logout"),
    path("security/", views.security, name="security"),
    path("security/enable/", views.security_enable, name="security_enable"),
    path("security/confirm/", views.security_confirm, name="security_confirm"),
    path("security/disable/", views.security_disable, name="security_disable"),
    path("security/backup-codes/", views.security_backup_codes, name="security_backup_codes"),
    path("security/new-phone/", views.security_new_phone, name="security_new_phone"),
    path("administration/", views.administration, name="administration"),
    path("administration/require/", views.administration_require, name="administration_require"),
    path("administration/reset/", views.administration_reset, name="administration_reset"),
    path("administration/step-up/", views.step_up, name="step_up"),
    path("activity/", views.activity, name="activity"),
]
