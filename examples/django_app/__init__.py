"""A small Django project whose pages sit behind Django's login and twostep's second step."""
