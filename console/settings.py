"""Modelgate's one settings module.

Everything that differs between the embedded default (one machine, nothing to
install) and a production deployment (PostgreSQL, Redis, an MLflow server, a
cluster) is read from the environment through the typed helpers in
``console.env``. README.md lists every variable.
"""

import importlib.util
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from console.env import env_bool, env_int, env_list, env_rate, env_str

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
# MLflow gives its logger a handler of its own at INFO when imported ("Creating initial MLflow
# database tables..."), whatever LOGGING below says; its warnings still show.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

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
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off. Set SECRET_KEY or SECRET_KEY_FILE.")
    SECRET_KEY = _embedded_secret_key(VAR_DIR / "secret_key")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Behind a TLS-terminating proxy (an Ingress) Django sees plain HTTP unless it trusts the
# proxy's X-Forwarded-Proto; only turn this on when the proxy always sets that header.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies in front of Modelgate append to X-Forwarded-For. 0: the header is
# ignored (anyone can send it) and the client address is REMOTE_ADDR. The lockout and
# the API throttles key on this address (console/clientip.py).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before console.accounts: its failed-login receiver reads what axes' receiver decided.
    "axes",
    "csp",
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
    # Outermost: /healthz and /readyz before sessions; outages below become 503s.
    "console.outages.OutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
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
    # Last, as django-axes asks: turns a locked-out login into the 429 lockout page.
    "axes.middleware.AxesMiddleware",
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
            # Small filters every page uses ("just now", "3 minutes ago"), without a load line.
            "builtins": ["console.templatetags.console_extras"],
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
elif DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    # A database that refuses or stays silent fails a request within seconds, not minutes:
    # connecting gives up after DATABASE_CONNECT_TIMEOUT, a statement after
    # DATABASE_STATEMENT_TIMEOUT (the server cancels it), and the web answers 503.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 3, minimum=1),
            "options": f"-c statement_timeout={env_int('DATABASE_STATEMENT_TIMEOUT', 30, minimum=1) * 1000}",
            # A peer that vanished (no FIN, no ACK) is noticed within about 10 s: by TCP keepalives
            # while idle, and by tcp_user_timeout while a query waits to be acknowledged.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10000,
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# `make run` serves with gunicorn: WEB_WORKERS processes x WEB_THREADS threads. Each thread
# keeps at most one database connection (CONN_MAX_AGE), so their product bounds the console's
# connections (16 by default; PostgreSQL allows 100). More clients than threads queue.
WEB_WORKERS = env_int("WEB_WORKERS", 2, minimum=1)
WEB_THREADS = env_int("WEB_THREADS", 8, minimum=1)
WEB_TIMEOUT = env_int("WEB_TIMEOUT", 30, minimum=5)

# --- Cache ----------------------------------------------------------------
# Shared by every web process: the API throttles count here, and the run metrics read
# from MLflow are kept here briefly. CACHE_URL=redis://host:6379/1 in production; the
# embedded default uses a table in the database (made by `migrate`, see console/apps.py).
CACHE_URL = env_str("CACHE_URL", "")
if CACHE_URL:
    if not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"CACHE_URL={CACHE_URL!r} must be a redis://, rediss:// or unix:// URL.")
    CACHES = {"default": {"BACKEND": "console.cache.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "modelgate_cache"}}

# --- Auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # Refuses every login while the username or the client address is locked out.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "registry:model-list"
LOGOUT_REDIRECT_URL = "login"

# --- Login lockout (django-axes) ----------------------------------------------
# After LOGIN_FAILURE_LIMIT failed logins for one username, or from one client address,
# every login for it is refused (even with the right password) for LOGIN_LOCKOUT_MINUTES;
# each refused try starts that time again. Attempts are rows (axes' AccessAttempt), so
# the lockout needs no cache and holds across processes.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "console.clientip.client_ip"
AXES_LOCKOUT_CALLABLE = "console.accounts.lockout.lockout_response"
AXES_VERBOSE = False

# --- Security headers ------------------------------------------------------
SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind TLS (see cluster/configmap.yaml): redirect plain HTTP to HTTPS and send HSTS.
# Off by default because the embedded default and the compose stack serve plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes and Prometheus reach the pod directly over HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
CSRF_FAILURE_VIEW = "console.urls.csrf_failure"

# A strict Content-Security-Policy: scripts, styles, images and requests only from this
# origin; no inline script, style attribute or eval anywhere (tests/test_csp.py scans
# the templates). Behaviour lives in static/js/modelgate.js, looks in static/css.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # Swagger UI's and uPlot's CSS draw icons from data: URIs.
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Static ---------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Outside VAR_DIR in the image (Dockerfile): a volume mounted on the data directory must not
# hide the files `collectstatic` put there at build time.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles"))).resolve()
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Hashed file names (css/modelgate.3f2a….css) from a manifest that `collectstatic` writes, so
# a browser never keeps an old script after an upgrade; WhiteNoise serves them with a
# one-year cache and compressed. It needs `collectstatic` first (the Dockerfile runs it, and
# `manage.py up` does when DEBUG is off), so the embedded default and the tests, which never
# run it, keep plain names.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = True
# Served at the site's root: /favicon.ico, which browsers ask for on pages without a <link
# rel="icon"> (JSON answers, the API docs), so it never logs a 404.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"

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
# Run by the sync when MLflow's aliases of a model changed (the registry does not import the
# promotion workflow above it; this wires the workflow's drift check in).
REGISTRY_ALIAS_CHECKS = ["registry.promotions.drift.record_alias_drift"]
# The aliases a rollout is moving right now: the sync leaves them to the rollout.
REGISTRY_ALIASES_IN_MOTION = "registry.promotions.selectors.aliases_in_motion"
# Collectors added to Modelgate's own /metrics by the apps above the console (console/metrics.py).
OWN_METRICS_COLLECTORS = ["deployer.own_metrics.RolloutCollector"]
# /readyz waits at most this long for each dependency (checked in parallel).
READYZ_TIMEOUT = env_int("READYZ_TIMEOUT", 3, minimum=1)
READYZ_MLFLOW_CHECK = "registry.gateway.ping"
# An Idempotency-Key whose first request died (killed, database gone) is released after this
# long. Keep it above the web server's request timeout (WEB_TIMEOUT).
IDEMPOTENCY_PENDING_SECONDS = env_int("IDEMPOTENCY_PENDING_SECONDS", 60, minimum=1)

# --- Celery ---------------------------------------------------------------
# The filesystem transport ignores the host, but kombu warns "No hostname was supplied" on
# every connection without one: name it.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_URL = "filesystem://localhost/"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded default's broker: kombu's filesystem transport needs no
    # server, and a real worker process consumes it.
    _broker_dir = VAR_DIR / "celery" / "broker"
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    # kombu's options differ per transport (paths here, timeouts for Redis).
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcasts (worker remote control) otherwise land in ./control of the cwd.
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A Redis that refuses or stays silent fails a send within seconds (the hand-over sweep
    # sends again later), instead of hanging the request that queued it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": env_int("REDIS_CONNECT_TIMEOUT", 3, minimum=1),
        "socket_timeout": env_int("REDIS_SOCKET_TIMEOUT", 5, minimum=1),
        "socket_keepalive": True,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = env_int("REDIS_CONNECT_TIMEOUT", 3, minimum=1)
# One quick retry when publishing; an outage beyond that is the sweep's job, not the request's.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
CELERY_TASK_IGNORE_RESULT = True
# What tasks print (the console e-mail backend's messages) is logged at INFO, into the worker's
# log, not at Celery's default WARNING, which `make run` would show on the terminal.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# How often the canary controller looks for canaries whose next check is due: a step lasts
# at most this much longer than its plan says.
CANARY_RECONCILE_SECONDS = env_int("CANARY_RECONCILE_SECONDS", 5, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "registry-sync": {
        "task": "registry.sync_registry",
        "schedule": float(REGISTRY_SYNC_INTERVAL),
        "options": {"expires": float(REGISTRY_SYNC_INTERVAL)},
    },
    "promotions-expire": {"task": "promotions.expire_requests", "schedule": 300.0},
    # Rollouts whose worker died (their lease ran out) or whose message was lost.
    "deployer-resume": {"task": "deployer.resume_rollouts", "schedule": 15.0, "options": {"expires": 15.0}},
    # The canary controller: canaries whose next check is due go back to a worker.
    "deployer-canaries": {
        "task": "deployer.reconcile_canaries",
        "schedule": float(CANARY_RECONCILE_SECONDS),
        "options": {"expires": float(CANARY_RECONCILE_SECONDS)},
    },
    "deployer-drift": {"task": "deployer.check_drift", "schedule": 60.0, "options": {"expires": 60.0}},
    "deployer-guard": {"task": "deployer.guard_check", "schedule": 10.0, "options": {"expires": 10.0}},
    "metrics-scrape": {"task": "deployer.scrape_metrics", "schedule": 10.0, "options": {"expires": 10.0}},
    "metrics-downsample": {"task": "deployer.downsample_metrics", "schedule": 60.0, "options": {"expires": 60.0}},
}
# Rollouts run on their own queue, so a long rollout never delays the registry sync,
# webhooks or e-mail on the default one (and workers can be scaled per queue).
DEPLOY_QUEUE = env_str("DEPLOY_QUEUE", "deploy")
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_DEFAULT_QUEUE", "celery")
CELERY_TASK_ROUTES = {
    "deployer.deploy_promotion": {"queue": DEPLOY_QUEUE},
    "deployer.run_rollout": {"queue": DEPLOY_QUEUE},
}

# --- Deployer -------------------------------------------------------------
# The local backend's model servers and exported SavedModels.
DEPLOYER_LOCAL_ROOT = Path(env_str("DEPLOYER_LOCAL_ROOT", str(VAR_DIR / "deployments")))
# A worker renews its claim on a running rollout this often; a claim older than the lease
# belongs to a dead worker and the rollout is resumed elsewhere.
DEPLOYER_LEASE_SECONDS = env_int("DEPLOYER_LEASE_SECONDS", 30, minimum=3)
# An approved request without a rollout after this long lost its hand-over message (the
# broker was down); the resume sweep creates and queues its rollout.
DEPLOYER_HANDOVER_GRACE_SECONDS = env_int("DEPLOYER_HANDOVER_GRACE_SECONDS", 30, minimum=0)
# The init container that downloads a version from MLflow into the pod (an image with MLflow).
MODELGATE_FETCHER_IMAGE = env_str("MODELGATE_FETCHER_IMAGE", "ghcr.io/mlflow/mlflow:v3.17.2")
# The MLflow address as pods in the cluster reach it (often not the one Modelgate uses).
DEPLOYER_MLFLOW_TRACKING_URI = env_str("DEPLOYER_MLFLOW_TRACKING_URI", MLFLOW_TRACKING_URI)
# Read Kubernetes deployments' request metrics from this Prometheus (e.g. http://prometheus:9090)
# instead of scraping every pod through the API server's pod proxy. Empty: scrape the pods.
PROMETHEUS_URL = env_str("PROMETHEUS_URL", "")
# How many deployments' replicas one scrape cycle reads at a time (the reads wait on the
# network; a replica that does not answer holds a thread for up to 3 s).
METRICS_SCRAPE_CONCURRENCY = env_int("METRICS_SCRAPE_CONCURRENCY", 16)

# --- API ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "console.accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["console.renderers.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["console.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "console.api.exception_handler",
    # Every list: a cursor page in the view's `ordering` (console.api.CursorPage, max 200).
    "DEFAULT_PAGINATION_CLASS": "console.api.CursorPage",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    # Per token (or per signed-in user): API_RATE_LIMIT requests, then 429 with Retry-After.
    # Failed bearer logins from one client address: API_AUTH_FAILURE_RATE, then 429 for
    # that address whatever token it sends (console/accounts/throttling.py).
    "DEFAULT_THROTTLE_CLASSES": ["console.accounts.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "token": env_rate("API_RATE_LIMIT", "600/minute"),
        "bearer_failure": env_rate("API_AUTH_FAILURE_RATE", "30/minute"),
    },
}
# The docs page's own script is served as a file (SpectacularSwaggerSplitView), so the
# CSP needs no 'unsafe-inline'.
SPECTACULAR_SETTINGS = {
    "TITLE": "Modelgate API",
    "DESCRIPTION": (
        "Registry, promotion and deployment of ML models. Authenticate with `Authorization: Bearer <token>`."
    ),
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
    # An outage is logged once when it starts and once when it ends (console.outages), not
    # as a traceback per request.
    "filters": {"quiet_outages": {"()": "console.outages.QuietOutages"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["quiet_outages"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "mlflow": {"level": "WARNING"},
        "alembic": {"level": "WARNING"},
        # Lockouts are logged at WARNING (and audited); every attempt is not.
        "axes": {"level": "WARNING"},
    },
}
# At most this many versions have their artifacts inspected per sync run; the
# rest follow in the next runs, so a first sync of a large registry stays short.
REGISTRY_SYNC_INSPECT_LIMIT = env_int("REGISTRY_SYNC_INSPECT_LIMIT", 200, minimum=1)
# Offer converting a version's Keras 3 .keras archive to a SavedModel (the worker needs TensorFlow).
MODELGATE_KERAS_CONVERSION = env_bool("MODELGATE_KERAS_CONVERSION", importlib.util.find_spec("tensorflow") is not None)
