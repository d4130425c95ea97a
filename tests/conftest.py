"""Test-wide settings: hypothesis runs a fixed set of examples in CI (CI=true), new ones here."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
