"""Three pages: the password (Django's), the code (twostep's), and a page behind both."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("code/", views.code_view, name="code"),
    path("", views.home_view, name="home"),
]
