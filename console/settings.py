"""Modelgate's one settings module.

Everything that differs between the embedded default (one machine, nothing to
install) and a production deployment (PostgreSQL, Redis, an MLflow server, a
cluster) is read from the environment through the typed helpers in
``console.env``. README.md lists every variable.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from console.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MODELGATE_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

# MLflow phones home unless told not to, and this product must never reach the
# network on its own.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow's HTTP client retries 7 times with exponential backoff by default: minutes
# in which a web request hangs. Fail fast instead and say "retry"; the periodic
# sync retries on its own. Values set in the environment win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")

DEBUG = env_bool("DEBUG", True)


def _embedded_secret_key(path: Path) -> str:
    """Generated once for the embedded default and kept under var/ (mode 600)."""
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set SECRET_KEY or SECRET_KEY_FILE."
        )
    SECRET_KEY = _embedded_secret_key(VAR_DIR / "secret_key")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Behind a TLS-terminating proxy (an Ingress) Django sees plain HTTP unless it trusts the
# proxy's X-Forwarded-Proto; only turn this on when the proxy always sets that header.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "console",
    "console.accounts",
    "console.audit",
    "registry",
    "registry.promotions",
    "deployer",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "console.middleware.RequestIdMiddleware",
    "console.middleware.RequestBodyLimitMiddleware",
    "console.metrics.RequestMetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "console.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "console.middleware.NotFoundPageMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

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
                "console.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'modelgate.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker share the file: WAL lets them read while the
    # other writes, IMMEDIATE transactions avoid "database is locked" upgrades.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so a worker process started by a test sees the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-modelgate.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "registry:model-list"
LOGOUT_REDIRECT_URL = "login"

SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Static ---------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

# --- MLflow ---------------------------------------------------------------
MLFLOW_DIR = VAR_DIR / "mlflow"
MLFLOW_DIR.mkdir(parents=True, exist_ok=True)
MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI", f"sqlite:///{MLFLOW_DIR / 'mlflow.db'}")
MLFLOW_REGISTRY_URI = env_str("MLFLOW_REGISTRY_URI", MLFLOW_TRACKING_URI)
# Where experiments that Modelgate itself creates (the demo) keep their artifacts.
MLFLOW_ARTIFACT_ROOT = env_str("MLFLOW_ARTIFACT_ROOT", (MLFLOW_DIR / "artifacts").as_uri())
# A version's source must be an MLflow model URI (models:/, runs:/) or lie under
# one of these roots. Anything else is refused with a 400 that says why.
# Webhooks: https only unless this is on; internal addresses only where these CIDRs name them
# (registry/promotions/webhook_address.py).
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", False)
WEBHOOK_ALLOWED_NETWORKS = env_list("WEBHOOK_ALLOWED_NETWORKS", [])
# Request bodies over this many bytes are refused with a 413 (console.middleware).
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 2 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# JSON nested deeper than this is refused with a 400 (console.parsers.JSONParser).
MAX_JSON_DEPTH = 32
MODELGATE_ALLOWED_SOURCE_ROOTS = env_list("MODELGATE_ALLOWED_SOURCE_ROOTS", [MLFLOW_ARTIFACT_ROOT])
MODELGATE_URL = env_str("MODELGATE_URL", "http://127.0.0.1:8000")
MLFLOW_UI_URL = env_str("MLFLOW_UI_URL", "")
REGISTRY_SYNC_INTERVAL = env_int("REGISTRY_SYNC_INTERVAL", 60, minimum=5)

# --- Celery ---------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded default's broker: kombu's filesystem transport needs no
    # server, and a real worker process consumes it.
    _broker_dir = VAR_DIR / "celery" / "broker"
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcasts (worker remote control) otherwise land in ./control of the cwd.
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "registry-sync": {
        "task": "registry.sync_registry",
        "schedule": float(REGISTRY_SYNC_INTERVAL),
        "options": {"expires": float(REGISTRY_SYNC_INTERVAL)},
    },
    "promotions-expire": {"task": "promotions.expire_requests", "schedule": 300.0},
    # Rollouts whose worker died (their lease ran out) or whose message was lost.
    "deployer-resume": {"task": "deployer.resume_rollouts", "schedule": 15.0, "options": {"expires": 15.0}},
    "deployer-drift": {"task": "deployer.check_drift", "schedule": 60.0, "options": {"expires": 60.0}},
    "deployer-guard": {"task": "deployer.guard_check", "schedule": 10.0, "options": {"expires": 10.0}},
    "metrics-scrape": {"task": "deployer.scrape_metrics", "schedule": 10.0, "options": {"expires": 10.0}},
    "metrics-downsample": {"task": "deployer.downsample_metrics", "schedule": 60.0, "options": {"expires": 60.0}},
}
# Rollouts run on their own queue, so a long rollout never delays the registry sync,
# webhooks or e-mail on the default one (and workers can be scaled per queue).
DEPLOY_QUEUE = env_str("DEPLOY_QUEUE", "deploy")
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_DEFAULT_QUEUE", "celery")
CELERY_TASK_ROUTES = {"deployer.deploy_promotion": {"queue": DEPLOY_QUEUE},
                      "deployer.run_rollout": {"queue": DEPLOY_QUEUE}}

# --- Deployer -------------------------------------------------------------
# The local backend's model servers and exported SavedModels.
DEPLOYER_LOCAL_ROOT = Path(env_str("DEPLOYER_LOCAL_ROOT", str(VAR_DIR / "deployments")))
# A worker renews its claim on a running rollout this often; a claim older than the lease
# belongs to a dead worker and the rollout is resumed elsewhere.
DEPLOYER_LEASE_SECONDS = env_int("DEPLOYER_LEASE_SECONDS", 30, minimum=3)
# The init container that downloads a version from MLflow into the pod (an image with MLflow).
MODELGATE_FETCHER_IMAGE = env_str("MODELGATE_FETCHER_IMAGE", "ghcr.io/mlflow/mlflow:v3.17.2")
# The MLflow address as pods in the cluster reach it (often not the one Modelgate uses).
DEPLOYER_MLFLOW_TRACKING_URI = env_str("DEPLOYER_MLFLOW_TRACKING_URI", MLFLOW_TRACKING_URI)
# Read Kubernetes deployments' request metrics from this Prometheus (e.g. http://prometheus:9090)
# instead of scraping every pod through the API server's pod proxy. Empty: scrape the pods.
PROMETHEUS_URL = env_str("PROMETHEUS_URL", "")

# --- API ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "console.accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["console.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "console.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Modelgate API",
    "DESCRIPTION": "Registry, promotion and deployment of ML models. Authenticate with `Authorization: Bearer <token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "console.schema.add_error_responses"],
}

# --- Email and logging ----------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "modelgate@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "mlflow": {"level": "WARNING"},
        "alembic": {"level": "WARNING"},
    },
}
# At most this many versions have their artifacts inspected per sync run; the
# rest follow in the next runs, so a first sync of a large registry stays short.
REGISTRY_SYNC_INSPECT_LIMIT = env_int("REGISTRY_SYNC_INSPECT_LIMIT", 200, minimum=1)
