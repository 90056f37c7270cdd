from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from gateway.contract.errors import PlatformError
from tenants.scoping import TenantOwned, TenantScopedManager

slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,62}$",
    "Use 1-63 lowercase letters, digits and hyphens, starting with a letter or digit.",
)


def slug_name_clean(name, *, what: str) -> str:
    """A tenant-chosen name (of a model, graph or deployment), stripped, or a 400
    invalid_name that says what a name may be."""
    name = (name or "").strip() if isinstance(name, str) else name
    try:
        slug_validator(name)
    except (ValidationError, TypeError):
        raise PlatformError(f"Invalid {what} name {name!r}: use 1-63 lowercase letters, digits and hyphens.",
                            code="invalid_name") from None
    return name


class Tenant(models.Model):
    name = models.CharField(max_length=120)
    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    plan = models.ForeignKey("tenants.Plan", null=True, blank=True, on_delete=models.PROTECT, related_name="tenants",
                             help_text="Empty: the default plan")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class Membership(TenantOwned):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant_id} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


class Scope(models.TextChoices):
    INFER = "infer", "Inference (gateway)"
    MANAGE = "manage", "Management (REST API)"


class ApiKey(TenantOwned):
    label = models.CharField(max_length=120)
    prefix = models.CharField(max_length=16, unique=True, help_text="Visible part of the key")
    secret_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the whole key")
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.label} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Hardware(models.TextChoices):
    CPU = "cpu", "CPU"
    GPU = "gpu", "GPU"


class Plan(models.Model):
    """A tier of service: its quota (level "plan") gives every tenant on it their defaults."""

    name = models.CharField(max_length=120)
    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    is_default = models.BooleanField(default=False, help_text="Given to new tenants and to tenants without a plan")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["is_default"], condition=models.Q(is_default=True),
                                               name="plan_single_default")]

    def __str__(self) -> str:
        return self.name


class QuotaLevel(models.TextChoices):
    PLAN = "plan", "Plan"
    TENANT = "tenant", "Tenant"
    DEPLOYMENT = "deployment", "Deployment"
    KEY = "key", "API key"


class Enforcement(models.TextChoices):
    HARD = "hard", "Hard (reject)"
    SOFT = "soft", "Soft (allow, flag and notify)"


# Limits a deployment or a key can carry; plans and tenants carry the deploy-time ones too.
REQUEST_LIMITS = ("rate_per_second", "rate_burst", "max_concurrency", "monthly_requests",
                  "monthly_requests_enforcement", "monthly_compute_seconds", "monthly_compute_enforcement",
                  "max_payload_bytes")
DEPLOY_LIMITS = ("max_models", "max_deployments", "max_instances", "max_model_memory_mb", "allowed_hardware",
                 "max_batch_size")


class Quota(models.Model):
    """The limits set at one level: a plan, a tenant, a deployment or an API key.

    An empty field sets no limit at that level. A tenant's own field overrides its plan's;
    deployment and key limits count that deployment's or key's requests and apply on top,
    so the effective limit of a request is the tightest that applies."""

    level = models.CharField(max_length=16, choices=QuotaLevel.choices, editable=False)
    plan = models.OneToOneField(Plan, null=True, blank=True, on_delete=models.CASCADE, related_name="quota")
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="quotas")
    deployment = models.OneToOneField("workers.Deployment", null=True, blank=True, on_delete=models.CASCADE,
                                      related_name="quota")
    api_key = models.OneToOneField(ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="quota")

    rate_per_second = models.FloatField(null=True, blank=True, help_text="Sustained requests per second")
    rate_burst = models.PositiveIntegerField(null=True, blank=True,
                                             help_text="Requests allowed at once above the sustained rate (default: "
                                                       "one second's worth)")
    max_concurrency = models.PositiveIntegerField(null=True, blank=True, help_text="Requests in flight at once")
    monthly_requests = models.BigIntegerField(null=True, blank=True, help_text="Requests per calendar month (UTC)")
    monthly_requests_enforcement = models.CharField(max_length=8, choices=Enforcement.choices,
                                                    default=Enforcement.HARD)
    monthly_compute_seconds = models.FloatField(null=True, blank=True,
                                                help_text="Inference compute seconds per calendar month (UTC)")
    monthly_compute_enforcement = models.CharField(max_length=8, choices=Enforcement.choices,
                                                   default=Enforcement.HARD)
    max_payload_bytes = models.BigIntegerField(null=True, blank=True, help_text="Largest request body accepted")

    max_models = models.PositiveIntegerField(null=True, blank=True)
    max_deployments = models.PositiveIntegerField(null=True, blank=True, help_text="Deployments not undeployed")
    max_instances = models.PositiveIntegerField(null=True, blank=True, help_text="Model instances per deployment")
    max_model_memory_mb = models.PositiveIntegerField(null=True, blank=True,
                                                      help_text="Total estimated memory of the deployed models")
    allowed_hardware = models.JSONField(null=True, blank=True, help_text='e.g. ["cpu"] or ["cpu", "gpu"]')
    max_batch_size = models.PositiveIntegerField(null=True, blank=True)

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["level", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant"], condition=models.Q(level="tenant"), name="quota_one_per_tenant"),
            models.CheckConstraint(
                name="quota_level_target",
                condition=(
                    models.Q(level="plan", plan__isnull=False, tenant__isnull=True, deployment__isnull=True,
                             api_key__isnull=True)
                    | models.Q(level="tenant", plan__isnull=True, tenant__isnull=False, deployment__isnull=True,
                               api_key__isnull=True)
                    | models.Q(level="deployment", plan__isnull=True, tenant__isnull=False, deployment__isnull=False,
                               api_key__isnull=True)
                    | models.Q(level="key", plan__isnull=True, tenant__isnull=False, deployment__isnull=True,
                               api_key__isnull=False)
                ),
            ),
        ]

    def __str__(self) -> str:
        target = self.plan or self.deployment or self.api_key or self.tenant
        return f"{self.get_level_display()} quota: {target}"


class Surface(models.TextChoices):
    ADMIN = "admin", "Admin"
    API = "api", "API"
    PAGE = "page", "Portal page"
    SYSTEM = "system", "System"


class AuditLog(models.Model):
    """Who changed what, when, from which old value to which new, and through which
    surface: one row per change to a plan, quota, API key or deployment setting, written in
    the transaction that makes the change (tenants/audit.py). Rows are never updated.
    `tenant` is empty for platform-wide changes (a plan's limits)."""

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    acting_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    acting_api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    surface = models.CharField(max_length=8, choices=Surface.choices)
    event_type = models.CharField(max_length=40, db_index=True, help_text="e.g. quota.changed, api_key.revoked")
    object_type = models.CharField(max_length=20, help_text="plan, quota, api_key, deployment or tenant")
    object_id = models.BigIntegerField(null=True, blank=True)
    object_repr = models.CharField(max_length=200)
    old_value = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    new_value = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    unscoped = models.Manager()
    objects = TenantScopedManager()

    class Meta:
        default_manager_name = "unscoped"
        base_manager_name = "unscoped"
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-occurred_at"], name="auditlog_tenant_time")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.object_repr} by {self.acting_user or self.acting_api_key or self.surface}"
