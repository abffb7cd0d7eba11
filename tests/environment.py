"""Loaded by pytest before Django (see addopts): the environment the tests run in.

Tests run in production mode (DEBUG off), filling in only what production settings
require: a secret key and the host names. The test clients speak plain HTTP, so the
redirect to HTTPS is off (tests/test_production.py checks the real production defaults).
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-0123456789-abcdefghijklmnop")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# A partner front end allowed to use the API with its users' sessions (tests/test_auth.py).
os.environ.setdefault("ALLOWED_ORIGINS", "https://app.example.com")
