"""Adapters for web frameworks, each behind its extra (``pip install 'twostep[flask]'``).

Nothing here is imported by ``import twostep``; each adapter imports its framework.
"""
