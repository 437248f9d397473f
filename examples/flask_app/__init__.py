"""A Flask application with every screen of twostep's rules (see README.md)."""
