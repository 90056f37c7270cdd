from django.db import models

from tenants.scoping import TenantOwned


class UsageEvent(TenantOwned):
    """One admitted gateway request. request_id makes ingestion idempotent."""

    request_id = models.UUIDField(unique=True)
    api_key = models.ForeignKey("tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    deployment = models.ForeignKey("workers.Deployment", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    deployment_name = models.CharField(max_length=63, blank=True)
    model_version_id = models.BigIntegerField(null=True, blank=True)
    protocol = models.CharField(max_length=16, default="http")
    endpoint = models.CharField(max_length=32, default="infer")
    status = models.PositiveSmallIntegerField()
    latency_ms = models.FloatField()
    upstream_ms = models.FloatField(null=True, blank=True)
    compute_ms = models.FloatField(default=0, help_text="Compute time counted against budgets (successful inference)")
    cold_start = models.BooleanField(default=False, help_text="Held while its deployment loaded from zero")
    cold_start_ms = models.FloatField(null=True, blank=True, help_text="How long it was held for the load")
    flags = models.CharField(max_length=200, blank=True, help_text="Soft limits exceeded, comma-separated")
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    occurred_at = models.DateTimeField(db_index=True)
    ingested_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["tenant", "-occurred_at"], name="usage_tenant_time")]

    def __str__(self) -> str:
        return f"{self.request_id} {self.deployment_name} {self.status}"


class QuotaAlert(TenantOwned):
    """A soft limit a tenant went past in one month: raised once, when metering first sees it."""

    limit = models.CharField(max_length=64, help_text="e.g. tenant_monthly_requests, key_monthly_compute")
    period = models.CharField(max_length=6, help_text="YYYYMM (UTC)")
    first_request_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "limit", "period"], name="quotaalert_once")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.limit} {self.period}"


class Meter(models.TextChoices):
    REQUESTS = "requests", "Inference requests (successful)"
    COMPUTE_MS = "compute_ms", "Compute time, ms (successful inference)"


class UsageRollup(TenantOwned):
    """Usage events summed per hour (UTC) × deployment × hardware × meter: what rating
    reads (billing/rollups.py). Rebuilt whole for an hour whenever that hour is rolled,
    so rolling again gives the same rows. The events behind a row are those of its tenant,
    hour and deployment that are billable (status 200, endpoint infer)."""

    hour = models.DateTimeField(help_text="Start of the UTC hour")
    deployment_id = models.BigIntegerField(null=True, blank=True)
    deployment_name = models.CharField(max_length=63, blank=True)
    hardware = models.CharField(max_length=8)
    meter = models.CharField(max_length=16, choices=Meter.choices)
    quantity = models.DecimalField(max_digits=24, decimal_places=6)
    events = models.PositiveIntegerField(help_text="Usage events summed into it")
    rolled_at = models.DateTimeField()

    class Meta(TenantOwned.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "hour", "deployment_id", "hardware", "meter"],
                                               name="usage_rollup_unique", nulls_distinct=False)]
        indexes = [models.Index(fields=["hour"], name="usage_rollup_hour")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.deployment_name} {self.meter}={self.quantity}"
