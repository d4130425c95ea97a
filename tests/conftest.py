"""Test-wide settings (hypothesis runs a fixed set of examples in CI (CI=true), new ones here)
and the session fixture ``tiny_run``."""

import os

from hypothesis import settings

from tests.fixtures_tiny_run import tiny_run

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

__all__ = ["tiny_run"]  # a fixture: tests ask for it by name
