"""``manage.py twostep``."""
