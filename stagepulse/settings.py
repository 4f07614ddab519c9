"""One env-driven settings module for every runtime mode.

Defaults are the embedded mode (SQLite, a filesystem Celery broker, a file cache, no server to
install). Environment variables switch each piece to production; see the README's table.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Nothing is created here: each folder under VAR_DIR is made by whoever first needs it (the
# SQLite file's by the database backend, the broker's and results' by the Celery app, the
# cache's by the file cache, the demo's by run_demo).
VAR_DIR = Path(os.environ.get("STAGEPULSE_VAR_DIR", BASE_DIR / "var"))

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def env_bool(name: str, default: bool = False) -> bool:
    """A yes/no variable: unset or empty is `default`; a word that is neither (DEBUG=ture) stops
    the start instead of quietly reading as False."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a yes/no value; use one of "
        f"{', '.join(sorted(TRUE_WORDS))} or {', '.join(sorted(FALSE_WORDS))}"
    )


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# dev (default) / demo / test: convenient defaults. production: everything must be given.
STAGEPULSE_ENV = os.environ.get("STAGEPULSE_ENV", "dev").strip().lower()
if STAGEPULSE_ENV not in {"dev", "demo", "test", "production"}:
    raise ImproperlyConfigured(
        f"STAGEPULSE_ENV={STAGEPULSE_ENV!r} is not one of dev, demo, test, production"
    )
PRODUCTION = STAGEPULSE_ENV == "production"

SECRET_KEY = os.environ.get("SECRET_KEY", "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if PRODUCTION:
    missing = [
        name
        for name, value in (("SECRET_KEY", SECRET_KEY), ("ALLOWED_HOSTS", ALLOWED_HOSTS))
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(
            f"STAGEPULSE_ENV=production needs {' and '.join(missing)} in the environment "
            "(e.g. SECRET_KEY=<50+ random characters> ALLOWED_HOSTS=stagepulse.example.org)"
        )
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters in production")
else:
    SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]", "testserver"]

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from the project: /api/docs/ works offline
    "corsheaders",
    "festival.apps.FestivalConfig",
    "stages",
    "devices",
    "emotions",
    "detectors",
    "operations.apps.OperationsConfig",
    "fanapi.apps.FanApiConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",  # before anything that may answer (CORS_* below)
    "festival.api_common.ApiErrorsAsJsonMiddleware",  # /api/ errors are JSON, even Django's own
    "festival.middleware.AwsFailsFastMiddleware",  # a person waiting: AWS calls give up fast
    "django.middleware.http.ConditionalGetMiddleware",  # ETag + 304 for the polled fan API
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if PRODUCTION:  # static files served by the app itself behind the proxy
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "stagepulse.urls"
WSGI_APPLICATION = "stagepulse.wsgi.application"
ASGI_APPLICATION = "stagepulse.asgi.application"

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
            ]
        },
    }
]

# --- Database ------------------------------------------------------------------------------------
if PRODUCTION:
    # The embedded defaults (SQLite, a file cache, a folder broker) work on one box only: in
    # production a forgotten variable must stop the start, not quietly split state per host.
    _env = os.environ.get
    _problems = [
        wanted
        for wanted, missing in (
            (
                "DATABASE_URL (PostgreSQL, e.g. postgres://user@db:5432/stagepulse)",
                not _env("DATABASE_URL") or _env("DATABASE_URL", "").startswith("sqlite"),
            ),
            (
                "CACHE_URL (redis://...: throttles and the live ranking are shared through it)",
                not _env("CACHE_URL", "").startswith(("redis://", "rediss://")),
            ),
            (
                "CELERY_BROKER_URL (e.g. redis://..., not filesystem://)",
                _env("CELERY_BROKER_URL", "filesystem://") in ("", "filesystem://"),
            ),
        )
        if missing
    ]
    if _problems:
        raise ImproperlyConfigured(
            "STAGEPULSE_ENV=production does not run on the embedded defaults; set "
            + "; ".join(_problems)
        )

DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'stagepulse.sqlite3'}")
# Persistent connections are kept per thread and closed only when that thread serves its next
# request, so with gunicorn gthread (or any thread pool) every idle thread holds one open
# forever: workers x threads x hosts until PostgreSQL refuses new clients. Default 0: a
# connection per request, never an idle one. Raise DB_CONN_MAX_AGE (seconds) only with sync
# workers (one connection per process) or behind PgBouncer. Health checks replace a reused
# connection that died (failover, PgBouncer restart) instead of failing the request.
DB_CONN_MAX_AGE = int(os.environ.get("DB_CONN_MAX_AGE", "0"))
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=DB_CONN_MAX_AGE, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write to one file: wait for the lock instead of failing, and take the
    # write lock at BEGIN so two writers never deadlock upgrading a read lock. The backend is
    # Django's, creating the file's folder on its first connection (festival/sqlite3).
    DATABASES["default"]["ENGINE"] = "festival.sqlite3"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ---------------------------------------------------------------------------------------
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": CACHE_URL,
            # A cache outage degrades, never breaks: errors are ignored, and a Redis host that
            # stops answering costs a request at most half a second, not the OS's TCP timeout.
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
            "KEY_PREFIX": "stagepulse",
        }
    }
elif CACHE_URL == "locmem://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    # Shared between the web process and the Celery worker without a server.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# Password logins go through the brute-force guard (festival/login_guard.py, docs/security.md):
# after this many failures at an account from one address, or from one address at any account,
# in a window that long, those logins are refused, right password included.
AUTHENTICATION_BACKENDS = ["festival.authentication.LockoutModelBackend"]
LOGIN_FAILURES_PER_ACCOUNT = int(os.environ.get("LOGIN_FAILURES_PER_ACCOUNT", "5"))
LOGIN_FAILURES_PER_ADDRESS = int(os.environ.get("LOGIN_FAILURES_PER_ADDRESS", "20"))
LOGIN_LOCKOUT_SECONDS = int(os.environ.get("LOGIN_LOCKOUT_SECONDS", "900"))
# guesses at one account spread over many addresses; it locks only addresses the account never
# logged in from (remembered this many days), so the owner's usual places still get in
LOGIN_FAILURES_PER_ACCOUNT_ALL_ADDRESSES = int(
    os.environ.get("LOGIN_FAILURES_PER_ACCOUNT_ALL_ADDRESSES", "100")
)
LOGIN_KNOWN_ADDRESS_DAYS = int(os.environ.get("LOGIN_KNOWN_ADDRESS_DAYS", "30"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
LOGIN_URL = "admin:login"

# --- Security (production) -----------------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

# --- REST API ------------------------------------------------------------------------------------
# On Redis each web process sends a client's hits to the shared throttle counter every this many
# hits (and on every hit near the limit): fans polling now and then cost no round trip; a client
# may overshoot its limit by (processes x (this - 1)) requests a window. 1 = exact.
THROTTLE_SYNC_EVERY = int(os.environ.get("THROTTLE_SYNC_EVERY", "5"))

# The browsable API (HTML pages with forms) is a development tool: production answers JSON only,
# unless BROWSABLE_API=true says otherwise. Its choices are scoped either way (tenant_filters).
BROWSABLE_API = env_bool("BROWSABLE_API", DEBUG)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON nested deeper than api_common.MAX_JSON_DEPTH is a 400 on every endpoint.
    "DEFAULT_PARSER_CLASSES": [
        "festival.api_common.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "festival.api_common.StandardPagination",
    "PAGE_SIZE": 50,
    # Filters and ordering refuse values they would otherwise ignore silently (a 400).
    "DEFAULT_FILTER_BACKENDS": [
        "festival.tenant_filters.TenantFilterBackend",  # foreign-key choices scoped to the user
        "rest_framework.filters.SearchFilter",
        "festival.api_common.StrictOrderingFilter",
    ],
    # JSON only, unless BROWSABLE_API (default: DEBUG) turns the HTML pages on (docs/security.md).
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        *(["rest_framework.renderers.BrowsableAPIRenderer"] if BROWSABLE_API else []),
    ],
    "DEFAULT_SCHEMA_CLASS": "festival.api_schema.AutoSchema",  # documents the error answers
    "EXCEPTION_HANDLER": "festival.api_common.error_handler",
    "DEFAULT_THROTTLE_RATES": {
        "fan": os.environ.get("FAN_API_THROTTLE", "120/minute"),
        "telemetry": os.environ.get("TELEMETRY_THROTTLE", "30/minute"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # Throttles identify clients by address: trust X-Forwarded-For only from this many proxies
    # (0: the socket address; a client cannot dodge the fan throttle with a made-up header).
    "NUM_PROXIES": int(os.environ.get("NUM_PROXIES", 0)),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "StagePulse API",
    "DESCRIPTION": (
        "Organizer endpoints (token or session auth) and the public fan API of StagePulse. "
        "Numbers describe apparent facial expressions of crowds, aggregated; no identities."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's JavaScript and CSS from drf-spectacular-sidecar (static files), not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "MembershipRoleEnum": "festival.models.Role",
        "AnalysisModeEnum": "festival.models.AnalysisMode",
    },
}

# CORS for the public fan API only (a fan web app on its own origin); the organizer API stays
# same-origin. Origins per deployment: CORS_ALLOWED_ORIGINS=https://app.example.org,... (none by
# default, so no cross-origin reads until a deployment names its apps).
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/v1/public/.*$"
CORS_ALLOW_METHODS = ("GET", "HEAD", "OPTIONS")
CORS_ALLOW_CREDENTIALS = False
CORS_EXPOSE_HEADERS = ("ETag", "Retry-After")
CORS_PREFLIGHT_MAX_AGE = 86400

# A failed alert / announcement channel is tried again after each of these delays (seconds).
NOTIFY_RETRY_DELAYS_S = [
    int(x) for x in os.environ.get("NOTIFY_RETRY_DELAYS_S", "60,300,900,1800").split(",") if x
] or [60]

# --- Celery --------------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    # The folders are made when the Celery app is configured (stagepulse/celery.py).
    _broker_dir = VAR_DIR / "celery" / "broker"
    # kombu's filesystem transport with whole-file writes: its own lets a reader take a message
    # before it is written, which kills the worker (stagepulse/broker.py)
    CELERY_BROKER_TRANSPORT = "stagepulse.broker:AtomicFilesystemTransport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    _default_results = f"file://{VAR_DIR / 'celery' / 'results'}"
else:
    _default_results = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else ""
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", _default_results) or None
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task gets the task redelivered
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celery" / "beat-schedule")
CELERY_TIMEZONE = "UTC"
INGEST_INTERVAL_S = float(os.environ.get("INGEST_INTERVAL_S", 5))
# Set reports are built this long after a set ends (late crops still arriving).
REPORT_GRACE_MINUTES = int(os.environ.get("REPORT_GRACE_MINUTES", 10))
if REPORT_GRACE_MINUTES < 0:
    raise ImproperlyConfigured("REPORT_GRACE_MINUTES must be 0 or more")
# Crop retention (emotions.retention, docs/privacy.md): the analyzer's retention, the same value
# as the stack's CropRetentionHours, and how often the sweeper deletes crops older than it.
CROP_RETENTION_HOURS = int(os.environ.get("CROP_RETENTION_HOURS", 0))
if not 0 <= CROP_RETENTION_HOURS <= 24:
    raise ImproperlyConfigured(
        "CROP_RETENTION_HOURS must be 0..24 (the stack's CropRetentionHours)"
    )
CROP_SWEEP_INTERVAL_S = float(os.environ.get("CROP_SWEEP_INTERVAL_S", 600))
CELERY_BEAT_SCHEDULE: dict = {
    "sweep-set-reports": {
        "task": "emotions.tasks.sweep_set_reports",
        "schedule": float(os.environ.get("REPORT_SWEEP_INTERVAL_S", 60)),
        "options": {"expires": 120},
    },
    "health-heartbeat": {"task": "festival.tasks.heartbeat", "schedule": 60.0},
    "devices-health-sweep": {"task": "devices.tasks.sweep_device_health", "schedule": 60.0},
    "devices-metrics": {"task": "devices.tasks.publish_device_metrics", "schedule": 60.0},
    "devices-advance-rollouts": {"task": "devices.tasks.advance_rollouts", "schedule": 60.0},
    "devices-resume-deployments": {
        "task": "devices.tasks.resume_stalled_deployments",
        "schedule": 120.0,
    },
    "ingest-observations": {
        "task": "emotions.tasks.ingest_observations",
        "schedule": INGEST_INTERVAL_S,
        "options": {"expires": INGEST_INTERVAL_S * 2},  # a backlog of stale runs is useless
    },
    "measure-analysis-backlog": {
        "task": "emotions.tasks.measure_analysis_backlog",
        "schedule": float(os.environ.get("ANALYSIS_BACKLOG_INTERVAL_S", 15)),
        "options": {"expires": 30},
    },
    "sweep-expired-crops": {
        "task": "emotions.tasks.sweep_expired_crops",
        "schedule": CROP_SWEEP_INTERVAL_S,
        "options": {"expires": CROP_SWEEP_INTERVAL_S},
    },
    "refresh-comparison-runs": {
        "task": "emotions.tasks.refresh_comparison_runs",
        "schedule": float(os.environ.get("COMPARISON_REFRESH_INTERVAL_S", 60)),
        "options": {"expires": 120},
    },
}
# Comparison runs (emotions.comparison, docs/comparison.md): the price of one DetectFaces image
# in US dollars. Default USD 0.001: Rekognition Image Group 2 APIs, first tier (first 1 million
# images a month). https://aws.amazon.com/rekognition/pricing/ (read 2026-12-02 as a stored copy)
# names DetectFaces a Group 2 API, billed per image in monthly volume tiers, but draws its
# prices by script; the USD 0.0010 (next 1.5 million: 0.0008) is from a transcription of that
# page dated 2026-10-07 (api-evangelist/amazon-rekognition), for US East (N. Virginia) as AWS's
# examples are. Prices differ by region and fall with volume: set your region's and tier's.
REKOGNITION_PRICE_USD_PER_IMAGE = float(
    os.environ.get("STAGEPULSE_REKOGNITION_PRICE_USD_PER_IMAGE", "0.001")
)
if not 0 <= REKOGNITION_PRICE_USD_PER_IMAGE <= 1:
    raise ImproperlyConfigured("STAGEPULSE_REKOGNITION_PRICE_USD_PER_IMAGE must be 0..1 USD")

# Ingest (emotions.services; docs/operations.md "Ingest"): the observations table's stream is
# read with a checkpoint per shard. Observations are refused (and counted per reason) when their
# capture time is more than INGEST_MAX_FUTURE_S ahead of, or INGEST_MAX_AGE_S behind, the time
# DynamoDB received them (the stream keeps 24 h), or outside the festival's dates (± 1 day).
INGEST_MAX_FUTURE_S = int(os.environ.get("INGEST_MAX_FUTURE_S", 300))
INGEST_MAX_AGE_S = int(os.environ.get("INGEST_MAX_AGE_S", 24 * 3600))
INGEST_STREAM_PAGE_LIMIT = int(os.environ.get("INGEST_STREAM_PAGE_LIMIT", 1000))
INGEST_MAX_PAGES_PER_SHARD = int(os.environ.get("INGEST_MAX_PAGES_PER_SHARD", 100))
INGEST_LOCK_SECONDS = int(os.environ.get("INGEST_LOCK_SECONDS", 120))
# The analysis backlog (measured by a beat task, shown on /live and the dashboard): "analysis
# behind" once its oldest message waits longer than ANALYSIS_BEHIND_AFTER_S; operators get one
# alert per incident once it waits ANALYSIS_BACKLOG_ALERT_AFTER_S or the queue holds
# ANALYSIS_BACKLOG_ALERT_DEPTH messages, and a recovery notice below half of both.
ANALYSIS_BACKLOG_INTERVAL_S = float(os.environ.get("ANALYSIS_BACKLOG_INTERVAL_S", 15))
ANALYSIS_BEHIND_AFTER_S = float(os.environ.get("ANALYSIS_BEHIND_AFTER_S", 60))
ANALYSIS_BACKLOG_ALERT_AFTER_S = float(os.environ.get("ANALYSIS_BACKLOG_ALERT_AFTER_S", 180))
ANALYSIS_BACKLOG_ALERT_DEPTH = int(os.environ.get("ANALYSIS_BACKLOG_ALERT_DEPTH", 1000))

# --- AWS (boto3 clients come from awsclients/) ----------------------------------------------
AWS_ENDPOINT_URL = os.environ.get("AWS_ENDPOINT_URL", "")
AWS_DEFAULT_REGION = os.environ.get("AWS_DEFAULT_REGION", "eu-west-1")
CLOUDWATCH_NAMESPACE = os.environ.get("CLOUDWATCH_NAMESPACE", "StagePulse")
# Keep one CloudWatch dashboard per festival in step with its stages and cameras.
CLOUDWATCH_DASHBOARDS = env_bool("CLOUDWATCH_DASHBOARDS", PRODUCTION)
CROPS_BUCKET = os.environ.get("CROPS_BUCKET", "stagepulse-crops")
ARTIFACTS_BUCKET = os.environ.get("ARTIFACTS_BUCKET", "stagepulse-artifacts")

# Device fleet (devices/): see README "Device fleet".
DEVICE_OFFLINE_AFTER_MINUTES = int(os.environ.get("DEVICE_OFFLINE_AFTER_MINUTES", "5"))
DEPLOYMENT_TIMEOUT_MINUTES = int(os.environ.get("DEPLOYMENT_TIMEOUT_MINUTES", "30"))
DEPLOYMENT_POLL_SECONDS = float(os.environ.get("DEPLOYMENT_POLL_SECONDS", "15"))
# Deployment locks: no deployment reaches a camera whose stage has a set playing or starting
# within this margin, unless forced (docs/devices.md, "Deployment locks").
DEPLOYMENT_SET_MARGIN_MINUTES = float(os.environ.get("DEPLOYMENT_SET_MARGIN_MINUTES", "15"))
DEPLOYMENT_HOLD_RECHECK_SECONDS = float(os.environ.get("DEPLOYMENT_HOLD_RECHECK_SECONDS", "60"))
# Staged rollout (devices/services/rollouts.py): how long the canaries are watched, and what
# counts as worse telemetry than before.
ROLLOUT_WATCH_MINUTES = float(os.environ.get("ROLLOUT_WATCH_MINUTES", "10"))
ROLLOUT_MAX_FPS_DROP = float(os.environ.get("ROLLOUT_MAX_FPS_DROP", "0.2"))  # a share
ROLLOUT_MAX_ERRORS_PER_MIN_RISE = float(os.environ.get("ROLLOUT_MAX_ERRORS_PER_MIN_RISE", "1"))
# The rest wave, as Greengrass v2's thing-group rollout and abort settings would run it
# (docs/devices.md): deployments started per minute, and the failed share that halts it once
# that many cameras have finished.
ROLLOUT_MAX_PER_MINUTE = int(os.environ.get("ROLLOUT_MAX_PER_MINUTE", "5"))
ROLLOUT_ABORT_THRESHOLD_PERCENT = float(os.environ.get("ROLLOUT_ABORT_THRESHOLD_PERCENT", "20"))
ROLLOUT_ABORT_MIN_EXECUTED = int(os.environ.get("ROLLOUT_ABORT_MIN_EXECUTED", "2"))
# Camera input health (telemetry): one alert per incident (services.health).
INPUT_BLACK_AFTER_S = float(os.environ.get("INPUT_BLACK_AFTER_S", "30"))
INPUT_FROZEN_AFTER_S = float(os.environ.get("INPUT_FROZEN_AFTER_S", "60"))
INPUT_DARK_LUMA = float(os.environ.get("INPUT_DARK_LUMA", "40"))  # mean luminance, 0..255
INPUT_CLOCK_DRIFT_MAX_S = float(os.environ.get("INPUT_CLOCK_DRIFT_MAX_S", "30"))
INPUT_UPLOAD_GAP_MINUTES = float(os.environ.get("INPUT_UPLOAD_GAP_MINUTES", "10"))
INPUT_SPOOL_GROWING_MINUTES = float(os.environ.get("INPUT_SPOOL_GROWING_MINUTES", "10"))
INPUT_SPOOL_GROWING_MIN_ITEMS = int(os.environ.get("INPUT_SPOOL_GROWING_MIN_ITEMS", "50"))
DEEPLENS_LAMBDA_ROLE_ARN = os.environ.get("DEEPLENS_LAMBDA_ROLE_ARN", "")
DEEPLENS_LAMBDA_RUNTIME = os.environ.get("DEEPLENS_LAMBDA_RUNTIME", "python3.8")
STAGEPULSE_PUBLIC_URL = os.environ.get("STAGEPULSE_PUBLIC_URL", "")
TELEMETRY_IOT_RULE_SECRET = os.environ.get("TELEMETRY_IOT_RULE_SECRET", "")
# Or the stack's generated secret (output TelemetryRuleSecretArn), read from Secrets Manager.
TELEMETRY_IOT_RULE_SECRET_ARN = os.environ.get("TELEMETRY_IOT_RULE_SECRET_ARN", "")
# Permissions boundary of every camera role registration creates; empty = the stack's
# stagepulse-<STAGEPULSE_ENV>-device-boundary in the service's account (docs/infra.md).
DEVICE_ROLE_BOUNDARY_ARN = os.environ.get("DEVICE_ROLE_BOUNDARY_ARN", "")

# Face detectors (detectors/): see README "Bring your own face detector".
SAGEMAKER_ROLE_ARN = os.environ.get("SAGEMAKER_ROLE_ARN", "")
SAGEMAKER_TRAINING_IMAGE = os.environ.get("SAGEMAKER_TRAINING_IMAGE", "")


# Training jobs run with one platform role that reaches every tenant's data, so (docs/detectors.md):
# SAGEMAKER_TRAINING_IMAGE and the images on this list only (exact URIs, or a repository: any
# of its tags or digests) ...
SAGEMAKER_ALLOWED_IMAGES = env_list("SAGEMAKER_ALLOWED_IMAGES")
# ... roles: SAGEMAKER_ROLE_ARN and these ...
SAGEMAKER_ALLOWED_ROLE_ARNS = env_list("SAGEMAKER_ALLOWED_ROLE_ARNS")
# ... and data/output only under the organization's own prefixes ({organization} = its slug).
SAGEMAKER_ORGANIZATION_PREFIXES = env_list(
    "SAGEMAKER_ORGANIZATION_PREFIXES",
    "s3://{artifacts_bucket}/training/{organization}/,s3://{artifacts_bucket}/datasets/{organization}/",
)
TRAINING_JOB_POLL_SECONDS = float(os.environ.get("TRAINING_JOB_POLL_SECONDS", "60"))
FACE_MODEL_GATE_CLIP = os.environ.get(
    "FACE_MODEL_GATE_CLIP", "frames=30,width=1920,height=1080,faces=16,min_face=24,max_face=160"
)
FACE_MODEL_GATE_MARGIN = float(os.environ.get("FACE_MODEL_GATE_MARGIN", "0.02"))
FACE_MODEL_GATE_MIN_FPS_RATIO = float(os.environ.get("FACE_MODEL_GATE_MIN_FPS_RATIO", "0"))
# Labelled clips an organization uploads for the gate: each one adds its frames to every gate run.
LABELLED_CLIP_MAX_BYTES = int(os.environ.get("LABELLED_CLIP_MAX_BYTES", str(128 * 1024 * 1024)))
LABELLED_CLIP_MAX_FRAMES = int(os.environ.get("LABELLED_CLIP_MAX_FRAMES", "1800"))

OBSERVATIONS_TABLE = os.environ.get("OBSERVATIONS_TABLE", "stagepulse-observations")
ANALYSIS_QUEUE_NAME = os.environ.get("ANALYSIS_QUEUE_NAME", "stagepulse-analysis")
# The queue whose backlog is measured; empty: looked up from ANALYSIS_QUEUE_NAME.
ANALYSIS_QUEUE_URL = os.environ.get("ANALYSIS_QUEUE_URL") or os.environ.get(
    "STAGEPULSE_ANALYZER_QUEUE_URL", ""
)

# --- E-mail (alerts, set reports) ----------------------------------------------------------------
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", 25))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "StagePulse <stagepulse@localhost>")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "boto3": {"level": "WARNING"}},
}
