"""twostep for Django: the second step after ``django.contrib.auth``'s password (R93, R94).

``pip install 'twostep[django]'``, then in the settings::

    INSTALLED_APPS += ["twostep.integrations.django"]
    MIDDLEWARE += ["twostep.integrations.django.middleware.TwoStepMiddleware"]
    TWOSTEP = {"DATABASE": BASE_DIR / "twostep.db", "ISSUER": "Acme", "ACCOUNT_ID": "..."}
    LOGIN_URL = "twostep:login"

and ``path("account/", include("twostep.integrations.django.urls"))`` in the URLs.
"""
