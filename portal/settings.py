"""Settings for the whole platform. Everything comes from the environment, with
defaults that work on a developer machine (local PostgreSQL and Redis)."""
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PLATFORM_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-insecure-change-me-in-production")
DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "*").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "portal",
    "tenants",
    "graph_editor",
    "workers",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tenants.middleware.TenantMiddleware",
    "tenants.middleware.AuditSurfaceMiddleware",
]

ROOT_URLCONF = "portal.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "portal" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.platform",
            ],
        },
    },
]
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/inference_platform"),
        conn_max_age=60,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "control"
# Billing's periodic work (rollups, rating, spend, Stripe) has its own queue and worker
# process, so that rating a month never delays a cold start's load on the control queue.
CELERY_TASK_ROUTES = {"workers.tasks.*": {"queue": "control"}, "workers.projection.*": {"queue": "control"},
                      "billing.tasks.*": {"queue": "billing"}}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [d for d in [BASE_DIR / "frontend" / "dist"] if d.exists()]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.IsTenantMember"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api_errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "portal.api_base.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Inference Platform API",
    "DESCRIPTION": "Control-plane API: models, deployments, API keys and usage. "
    "Inference itself goes through the gateway (KServe v2 protocol).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI is served from this platform, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The default hook, and the 415 that every operation reading a body can answer.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "portal.api_base.document_unsupported_media_type"],
    # One name for each choice set that several fields share (limits at every level).
    "ENUM_NAME_OVERRIDES": {
        "EnforcementEnum": "tenants.models.Enforcement.choices",
        "HardwareEnum": "tenants.models.Hardware.choices",
    },
}

# Model uploads.
MODEL_STORAGE_DIR = Path(os.environ.get("MODEL_STORAGE_DIR", VAR_DIR / "models"))
MODEL_UPLOAD_MAX_BYTES = int(os.environ.get("MODEL_UPLOAD_MAX_BYTES", 200 * 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Triton: where locally started servers keep their model repositories.
TRITON_VAR_DIR = Path(os.environ.get("TRITON_VAR_DIR", VAR_DIR / "triton"))
TRITON_LOAD_TIMEOUT_S = float(os.environ.get("TRITON_LOAD_TIMEOUT_S", 120))
# The `auto` executor fuses a graph into one ONNX model while the model versions it names
# weigh at most this much together; heavier graphs run their steps as shared Triton models.
GRAPH_FUSE_MAX_MB = float(os.environ.get("GRAPH_FUSE_MAX_MB", 64))
# The autoscaler (workers/autoscaler.py): how often it runs, how long a minute of the
# keep-alive policies' clock lasts (60; a time-compressed trace replay shortens it), how
# long lower demand must last before instances are removed, and how long a deployment
# must have been idle before placement may evict it to make room.
AUTOSCALE_INTERVAL_S = float(os.environ.get("AUTOSCALE_INTERVAL_S", 5))
KEEPALIVE_MINUTE_S = float(os.environ.get("KEEPALIVE_MINUTE_S", 60))
INSTANCES_DOWN_AFTER_S = float(os.environ.get("INSTANCES_DOWN_AFTER_S", 60))
EVICT_MIN_IDLE_S = float(os.environ.get("EVICT_MIN_IDLE_S", 30))

# Public URLs printed by the demo and shown in the portal.
PORTAL_URL = os.environ.get("PORTAL_URL", "http://127.0.0.1:8000")
GATEWAY_URL = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # The Stripe SDK logs every request at INFO.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "stripe": {"level": "WARNING"}},
}

# Notifications (soft limits passed). Printed to the process log unless an SMTP backend is configured.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "platform@localhost")

# Memory share of a deployment's instance: what its runner may allocate beyond what it holds
# once loaded (workers.services.triton_config documents the rule): the instance's placement
# reservation times the headroom, never less than the floor in MB (both 0: no share).
DEPLOYMENT_MEMORY_SHARE_MB = int(os.environ.get("DEPLOYMENT_MEMORY_SHARE_MB", 1024))
DEPLOYMENT_MEMORY_HEADROOM = float(os.environ.get("DEPLOYMENT_MEMORY_HEADROOM", 4))

# Billing: invoices (billing/invoicing). A month's draft is finalized once the month has
# ended plus this grace; usage that arrives within it still lands in its own month.
BILLING_FINALIZE_GRACE_S = int(os.environ.get("BILLING_FINALIZE_GRACE_S", 3600))

# Billing: Stripe (billing/stripe_sync). An empty STRIPE_API_KEY leaves Stripe off: the
# platform rates and invoices alone and nothing Stripe runs. The bases point the official
# SDK elsewhere (the tests' fake Stripe); a meter event is sent once its hour is over plus
# STRIPE_METER_SETTLE_S (late events of the hour still land in it); a 429 is retried after
# STRIPE_BACKOFF_BASE_S doubled per try (with jitter), up to STRIPE_BACKOFF_TRIES tries.
STRIPE_API_KEY = os.environ.get("STRIPE_API_KEY", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "https://api.stripe.com")
STRIPE_METER_EVENTS_API_BASE = os.environ.get("STRIPE_METER_EVENTS_API_BASE", "https://meter-events.stripe.com")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_METER_SETTLE_S = float(os.environ.get("STRIPE_METER_SETTLE_S", 600))
STRIPE_BACKOFF_BASE_S = float(os.environ.get("STRIPE_BACKOFF_BASE_S", 0.5))
STRIPE_BACKOFF_TRIES = int(os.environ.get("STRIPE_BACKOFF_TRIES", 6))
# A tenant past due (a payment failed) is still served this long; then the gateway answers
# 402 payment_required until the invoice is paid (billing/spend.py).
BILLING_PAST_DUE_GRACE_S = int(os.environ.get("BILLING_PAST_DUE_GRACE_S", 259200))
# Usage from this UTC date (YYYY-MM-DD) on is mirrored to Stripe; empty: from the start of
# the month in which the Stripe sync first ran (earlier usage was invoiced without Stripe).
STRIPE_MIRROR_FROM = os.environ.get("STRIPE_MIRROR_FROM", "")
