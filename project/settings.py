"""Settings, read from the environment with safe embedded defaults (see README: Configuration)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = _env_flag("DJANGO_DEBUG")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string in production, "
            "or set DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-never-use-in-production"  # noqa: S105
# Former keys, still accepted for what they signed (sessions, sourceEvents cursors) while a new
# key is rolled out.
SECRET_KEY_FALLBACKS = _env_list("DJANGO_SECRET_KEY_FALLBACKS", "")

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is not set. Set it to the host names the service answers to, comma-separated "
        "(for example catalog.example.com), or set DJANGO_DEBUG=1 for local development."
    )
# Pages on these origins (besides the service's own) may use the API with the user's session:
# open a WebSocket, and POST with the CSRF token. Comma-separated, like https://app.example.com.
ALLOWED_ORIGINS = _env_list("ALLOWED_ORIGINS", "")
CSRF_TRUSTED_ORIGINS = ALLOWED_ORIGINS

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "strawberry_django",
    "catalog",
    "graph",  # its GraphiQL template and static files
    "accounts",  # after catalog: its post_migrate creates roles from the catalog's permissions
    "axes",  # sign-in attempts, limited (below)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files from the daphne process itself (no separate web server).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "catalog.middleware.ActorMiddleware",
    # Last, as django-axes asks: it answers a locked-out sign-in (the admin's) with 429. The
    # `login` mutation answers its own, as GraphQL (graph.session).
    "axes.middleware.AxesMiddleware",
]

# --- Sign-in attempts (django-axes): failures are counted in the database, so every process
# shares them. A client address or a username with SIGN_IN_FAILURE_LIMIT failures in a row is
# refused for SIGN_IN_COOLOFF_MINUTES, whatever the password; a success resets its count.
# Behind a proxy, run project.serve with --proxy-headers so that the address is the client's.
AUTHENTICATION_BACKENDS = [
    "accounts.backends.SignInLimit",  # first: it refuses before any password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("SIGN_IN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = dt.timedelta(minutes=float(os.environ.get("SIGN_IN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # its own log lines, once per attempt; the mutation's answer says enough

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: SQLite embedded by default, PostgreSQL (psycopg 3) when DATABASE_URL is set.
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    # A pool of connections per process (psycopg_pool, through Django's OPTIONS["pool"]) when
    # DATABASE_POOL_SIZE is 1 or more (the default, 10): a thread takes a connection from it
    # for a request or a read and gives it back when Django closes it, instead of keeping one
    # connection per thread. Django refuses a pool with persistent connections, hence
    # CONN_MAX_AGE 0. CONN_HEALTH_CHECKS stays on: with a pool, Django hands it to the pool as
    # its `check`, which tries each connection (an empty statement) before handing it out, so
    # that a request after a database outage gets a live connection, not one the outage broke
    # (project.database replaces them all at once; tests/test_database_outage.py). 0 turns the
    # pool off: one persistent connection per thread, checked at the start of each request.
    _pool_size = os.environ.get("DATABASE_POOL_SIZE") or "10"
    try:
        DATABASE_POOL_SIZE = int(_pool_size)
    except ValueError:
        DATABASE_POOL_SIZE = -1
    if not 0 <= DATABASE_POOL_SIZE <= 1000:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_SIZE must be a whole number of connections from 0 (no pool) to 1000, not {_pool_size!r}."
        )
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=0 if DATABASE_POOL_SIZE else 600, conn_health_checks=True
        )
    }
    # Without a timeout, opening a connection to a host that drops packets instead of refusing
    # them waits as long as the OS keeps trying (minutes), and so does the request behind it;
    # with one, the request fails fast with `unavailable`. A connect_timeout in the URL wins.
    _connect_timeout = os.environ.get("DATABASE_CONNECT_TIMEOUT") or "5"
    try:
        DATABASE_CONNECT_TIMEOUT = int(_connect_timeout)
    except ValueError:
        DATABASE_CONNECT_TIMEOUT = 0
    if not 2 <= DATABASE_CONNECT_TIMEOUT <= 300:
        raise ImproperlyConfigured(
            "DATABASE_CONNECT_TIMEOUT must be a whole number of seconds from 2 (libpq's minimum) to 300, "
            f"not {_connect_timeout!r}."
        )
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
    if DATABASE_POOL_SIZE:
        # Django's backend, with a pool that replaces the connections an outage broke at once.
        # Named after the channel-layer prefix below is derived, so that it stays as it was.
        _pooled_engine = "project.database"
        _connect_within = int(DATABASES["default"]["OPTIONS"]["connect_timeout"])  # the URL's, if it has one
        DATABASES["default"]["OPTIONS"]["pool"] = {
            # Two kept open, so that a quiet process still answers its first request at once.
            "min_size": min(2, DATABASE_POOL_SIZE),
            "max_size": DATABASE_POOL_SIZE,
            # How long a request waits for a connection, all taken or none to be had (the
            # database away): the same bound as for opening one, so an outage is still
            # `unavailable` within seconds, not after psycopg_pool's default 30 s.
            "timeout": _connect_within,
            # How long the pool keeps trying to replace a connection before it gives up on it
            # (psycopg_pool's default: 5 minutes, with growing pauses between attempts). Short,
            # so that after an outage no attempt is paused when the database returns: the next
            # request that needs a connection asks for a new one at once.
            "reconnect_timeout": _connect_within,
        }
else:
    SQLITE_PATH = os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3"))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            # IMMEDIATE: a transaction takes the write lock when it begins, so concurrent
            # writers wait for each other (up to `timeout` seconds) instead of failing with
            # "database is locked" when a transaction that read first tries to write.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            # A file, not Django's in-memory default: tests run writers on several threads.
            "TEST": {"NAME": f"{SQLITE_PATH}.test"},
        }
    }

# --- Channel layer: in-memory for one process, channels-redis when REDIS_URL is set.
REDIS_URL = os.environ.get("REDIS_URL", "")
# Which channels-redis layer carries the topics: "pubsub" (Redis PUBLISH/SUBSCRIBE) or "core"
# (a sorted set per channel). benchmarks/fanout.py (2 CPUs, one change, 1,000 subscribers,
# sending the mutation to the last result, median of 20): pubsub 1,431 ms on 1 process and
# 848 ms on 2 (dataLibrary), core 1,723 and 1,083 ms; server CPU per subscriber 1.1-2.5 ms
# against 1.6-3.1 ms. pubsub publishes once per group and process instead of once per
# subscriber, has no capacity to overflow and no group membership to expire (a SUBSCRIBE lasts
# as long as its connection, and redis-py renews it after a Redis restart). core, at 1,000
# sockets leaving at once, ran out of its 100 pooled Redis connections and left ~2,400 dead
# channels in its groups. So pubsub is the default; core stays available.
REDIS_CHANNEL_LAYER = os.environ.get("REDIS_CHANNEL_LAYER", "pubsub")
# redis-py 8 times a read out after 5 s by default, exactly the time channels-redis blocks
# waiting for a message: an idle subscriber's consumer would die of it.
# A Redis that drops packets must not hold a mutation's response for long: its change is
# committed, only the announcement waits (subscribers read a lost one from the log).
REDIS_HOSTS = [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 3}]
# The prefix of every channel and group name. Redis pub/sub channels ignore the database number
# in REDIS_URL, so two deployments on one Redis server would hear each other's changes (and the
# change numbers of another database). The processes of one deployment share their database:
# its identity names their topics, unless CHANNEL_LAYER_PREFIX says otherwise.
_database = DATABASES["default"]
_deployment = f"{_database['ENGINE']}|{_database.get('HOST')}|{_database.get('PORT')}|{_database['NAME']}|{REDIS_URL}"
CHANNEL_LAYER_PREFIX = os.environ.get("CHANNEL_LAYER_PREFIX") or (
    "catalog-" + hashlib.sha256(_deployment.encode()).hexdigest()[:12]
)
if DATABASE_URL and DATABASE_POOL_SIZE:
    DATABASES["default"]["ENGINE"] = _pooled_engine
if REDIS_URL and REDIS_CHANNEL_LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": REDIS_HOSTS, "prefix": CHANNEL_LAYER_PREFIX},
        }
    }
elif REDIS_URL and REDIS_CHANNEL_LAYER == "core":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "project.layers.ResilientRedisChannelLayer",
            "CONFIG": {
                "hosts": REDIS_HOSTS,
                "prefix": CHANNEL_LAYER_PREFIX,
                # A subscriber's channel holds this many undelivered messages before
                # channels-redis starts dropping them silently; a burst of changes must fit.
                "capacity": 5000,
                "expiry": 60,
                # The process's change feed and access watch join their topics again every
                # hour (graph.feed.REJOIN_SECONDS), well within this.
                "group_expiry": 86400 * 7,
            },
        }
    }
elif REDIS_URL:
    raise ImproperlyConfigured(f"REDIS_CHANNEL_LAYER must be 'core' or 'pubsub', not {REDIS_CHANNEL_LAYER!r}.")
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 5000, "expiry": 60},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The project time zone: "today" for delivery statuses and the data library's window.
TIME_ZONE = os.environ.get("TIME_ZONE", "Europe/Paris")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# In development WhiteNoise serves the apps' static files straight from their folders.
WHITENOISE_USE_FINDERS = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- The catalog
DATA_LIBRARY_WINDOW_DAYS = int(os.environ.get("DATA_LIBRARY_WINDOW_DAYS", "30"))

STRAWBERRY_DJANGO = {
    "PAGINATION_DEFAULT_LIMIT": 100,
    "PAGINATION_MAX_LIMIT": 1000,
    "MUTATIONS_DEFAULT_HANDLE_ERRORS": True,
}

# --- GraphQL limits (README: Limits): a request over one is refused before it costs anything.
GRAPHQL_MAX_REQUEST_BYTES = int(os.environ.get("GRAPHQL_MAX_REQUEST_BYTES", "65536"))  # HTTP body, WS message
GRAPHQL_MAX_DEPTH = int(os.environ.get("GRAPHQL_MAX_DEPTH", "10"))
GRAPHQL_MAX_ALIASES = int(os.environ.get("GRAPHQL_MAX_ALIASES", "30"))
GRAPHQL_MAX_TOKENS = int(os.environ.get("GRAPHQL_MAX_TOKENS", "2000"))
GRAPHQL_MAX_OPERATIONS_PER_CONNECTION = int(os.environ.get("GRAPHQL_MAX_OPERATIONS_PER_CONNECTION", "50"))
# Seconds between a socket's own checks that its credentials still hold; revocations,
# deactivations and sign-outs reach it at once anyway, this catches what announces nothing.
ACCESS_RECHECK_SECONDS = float(os.environ.get("ACCESS_RECHECK_SECONDS", "60"))
# Seconds between a subscription's checks of the change log for changes whose message the
# channel layer lost (Redis restarting, a full channel): the longest such a change waits.
SUBSCRIPTION_CATCH_UP_SECONDS = float(os.environ.get("SUBSCRIPTION_CATCH_UP_SECONDS", "5"))
# Bytes the server may hold for one WebSocket whose client reads too slowly (graph.outbox):
# past it, live states keep only their newest result and a sourceEvents socket is closed with
# 4509. At least 64 KiB, the size past which Twisted tells that a transport is filling up.
WEBSOCKET_SEND_BUFFER_BYTES = max(65536, int(os.environ.get("WEBSOCKET_SEND_BUFFER_BYTES", str(1024 * 1024))))
# Seconds a new socket has to send connection_init before it is closed with 4408.
GRAPHQL_CONNECTION_INIT_TIMEOUT = float(os.environ.get("GRAPHQL_CONNECTION_INIT_TIMEOUT", "10"))
# GraphiQL and code generators need introspection; turn it off to hide the schema.
GRAPHQL_INTROSPECTION = _env_flag("GRAPHQL_INTROSPECTION", default=True)

# --- Production (DJANGO_DEBUG unset): HTTPS only, cookies that never travel in clear text.
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _env_flag("SECURE_SSL_REDIRECT", default=True)
    # Load balancers probe over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = _env_flag("SECURE_HSTS_PRELOAD")
    if not SECURE_HSTS_PRELOAD:
        # Preloading is a promise to browser vendors that only the domain's owner can make.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    if _env_flag("DJANGO_BEHIND_TLS_PROXY"):
        # The proxy terminates TLS and says so in this header (and strips it from clients).
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every sign-in failure at INFO; its warnings (lockouts) still show.
    "loggers": {"axes": {"level": "WARNING"}},
}
