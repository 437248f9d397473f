"""Adapters of twostep to web frameworks, each behind its extra (``twostep[django]``...)."""
