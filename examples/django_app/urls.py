"""twostep's pages under /account/, and the example's own page."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("account/", include("twostep.integrations.django.urls")),  # twostep
    path("", views.home, name="home"),
]
