"""twostep's pages under /account/, and a page of the project behind both steps."""

from __future__ import annotations

from django.urls import include, path

from . import views

urlpatterns = [
    path("account/", include("twostep.integrations.django.urls")),
    path("", views.home_view, name="home"),
]
