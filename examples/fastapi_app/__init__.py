"""A JSON API with every flow of twostep's rules, on FastAPI (see README.md)."""
