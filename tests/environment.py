"""Loaded by pytest before Django (see addopts): the environment the tests run in.

Tests run in production mode (DEBUG off); only the secret key is filled in, because
settings refuse to start without one.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-0123456789-abcdefghijklmnop")
