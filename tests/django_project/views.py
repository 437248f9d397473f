"""The project's own page: Django's login_required; the middleware adds the second step."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.utils.html import format_html


@login_required
def home_view(request):
    return HttpResponse(format_html("<p>Hello {}</p>", request.twostep.email))
