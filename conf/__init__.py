"""Hydra configs of nmtbucket, installed as the package ``nmtbucket.conf`` (see pyproject.toml)."""
