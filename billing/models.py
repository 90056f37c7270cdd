from datetime import UTC

from django.conf import settings
from django.core.exceptions import ValidationError
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
    RESERVED_GB_H = "reserved_gb_h", "Warm reserved memory, GB-hours (min_instances)"


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
        # Covering, in rating's order: a tenant's month is read by an index-only scan.
        constraints = [models.UniqueConstraint(fields=["tenant", "hour", "deployment_id", "hardware", "meter"],
                                               name="usage_rollup_unique", nulls_distinct=False,
                                               include=["quantity", "deployment_name"])]
        indexes = [models.Index(fields=["hour"], name="usage_rollup_hour"),
                   # Rating: a tenant's earlier months rolled again since its last finalization;
                   # beat: tenants with late usage of an earlier month rolled lately.
                   models.Index(fields=["tenant", "rolled_at", "hour"], name="usage_rollup_tenant_rolled")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.deployment_name} {self.meter}={self.quantity}"


# --- Prices, invoices, spend limits and Stripe (billing/pricing.py, billing/invoicing.py) ---


class Component(models.TextChoices):
    """What a plan prices. Each is rated from the rollups of one meter (of one hardware)."""

    REQUESTS = "requests", "Inference requests, per 1,000"
    COMPUTE_CPU = "compute_cpu", "Compute on CPU, per second"
    COMPUTE_GPU = "compute_gpu", "Compute on GPU, per second"
    RESERVED_MEMORY = "reserved_memory", "Warm reserved memory, per GB-hour"


class PriceVersion(models.Model):
    """A plan's prices from `effective_from` (UTC) until the plan's next version takes
    effect. An event is rated by the version in force when it happened. Versions are
    never edited once in force: a change is a new version (the admin refuses edits)."""

    plan = models.ForeignKey("tenants.Plan", on_delete=models.CASCADE, related_name="price_versions")
    effective_from = models.DateTimeField(help_text="UTC; events from this moment are rated by this version")
    currency = models.CharField(max_length=3, default="usd", help_text="ISO 4217, lowercase (as Stripe writes it)")
    base_fee = models.DecimalField(max_digits=12, decimal_places=2, default=0, help_text="Per calendar month")
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["plan", "-effective_from"]
        constraints = [models.UniqueConstraint(fields=["plan", "effective_from"], name="priceversion_unique_start")]

    def clean(self):
        # Usage is rated by the hour (UTC): a change on the hour prices every event by the
        # version in force when it happened.
        moment = self.effective_from
        if moment is not None and moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0) != moment:
            raise ValidationError({"effective_from": "Prices take effect on the hour (UTC), e.g. 2027-01-01 00:00: "
                                                     "usage is rated hour by hour."})

    def __str__(self) -> str:
        return f"{self.plan} from {self.effective_from:%Y-%m-%d %H:%M} UTC ({self.currency.upper()})"


class Price(models.Model):
    """One component's price in a version: the first `free_allowance` units of a month
    are free; the units beyond it go through `tiers`, graduated: [{"up_to": "1000",
    "unit_price": "0.40"}, ..., {"up_to": null, "unit_price": "0.25"}], where up_to counts
    units beyond the allowance and the last tier has no bound. Amounts are Decimal strings."""

    version = models.ForeignKey(PriceVersion, on_delete=models.CASCADE, related_name="prices")
    component = models.CharField(max_length=16, choices=Component.choices)
    free_allowance = models.DecimalField(max_digits=24, decimal_places=6, default=0,
                                         help_text="Units per month at no charge")
    tiers = models.JSONField(default=list)

    class Meta:
        ordering = ["version", "component"]
        constraints = [models.UniqueConstraint(fields=["version", "component"], name="price_unique_component")]

    def __str__(self) -> str:
        return f"{self.get_component_display()} ({self.version})"


class Enforcement(models.TextChoices):
    HARD = "hard", "Hard (refuse requests)"
    SOFT = "soft", "Soft (alert only)"


class BillingAccount(models.Model):
    """A tenant's billing settings and standing: its spend limit (set by owners, at most
    `spend_limit_max` when admins set one), its Stripe ids, and whether it is past due."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="billing_account")
    email = models.EmailField(blank=True, help_text="Where invoices and spend alerts go (empty: the owners)")
    spend_limit = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True,
                                      help_text="Monthly spend limit in the plan's currency; empty: none")
    spend_limit_enforcement = models.CharField(max_length=8, choices=Enforcement.choices, default=Enforcement.HARD)
    spend_limit_max = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True,
                                          help_text="Set by admins: the highest spend limit owners may set")
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    stripe_subscription_id = models.CharField(max_length=64, blank=True)
    stripe_subscription_status = models.CharField(max_length=32, blank=True)
    past_due_since = models.DateTimeField(null=True, blank=True, help_text="A payment failed at this time")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Billing of {self.tenant}"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft (the month so far)"
    FINALIZED = "finalized", "Finalized"


class Invoice(TenantOwned):
    """A tenant's invoice for one calendar month (UTC): a live draft during the month and
    its grace period, then finalized by beat, numbered and immutable."""

    period_start = models.DateField(help_text="First day of the month (UTC)")
    period_end = models.DateField(help_text="First day of the next month (UTC), excluded")
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    number = models.CharField(max_length=32, unique=True, null=True, blank=True,
                              help_text="Given at finalization, from a sequence")
    total = models.DecimalField(max_digits=14, decimal_places=2, default=0, help_text="The sum of its lines")
    rated_at = models.DateTimeField(null=True, blank=True)
    rolled_through = models.DateTimeField(null=True, blank=True,
                                          help_text="The newest rollup the last rating read (its rolled_at)")
    finalized_at = models.DateTimeField(null=True, blank=True)
    stripe_invoice_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-period_start"]
        constraints = [models.UniqueConstraint(fields=["tenant", "period_start"], name="invoice_one_per_month")]

    def __str__(self) -> str:
        return self.number or f"Draft {self.period_start:%Y-%m} ({self.tenant_id})"

    # Fields a finalized invoice may still have written: what Stripe answers about it.
    MUTABLE_WHEN_FINALIZED = frozenset({"stripe_invoice_id"})

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        if self.pk and not (update_fields is not None and set(update_fields) <= self.MUTABLE_WHEN_FINALIZED):
            if Invoice.unscoped.filter(pk=self.pk, status=InvoiceStatus.FINALIZED).exists():
                raise InvoiceFinalized(f"Invoice {self.number} is finalized and cannot change.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if Invoice.unscoped.filter(pk=self.pk, status=InvoiceStatus.FINALIZED).exists():
            raise InvoiceFinalized(f"Invoice {self.number} is finalized and cannot be deleted.")
        return super().delete(*args, **kwargs)


class InvoiceFinalized(RuntimeError):
    """A write to a finalized invoice or its lines: they are immutable (correct with a credit note)."""


class InvoiceLineQuerySet(models.QuerySet):
    def _refuse_finalized(self):
        if self.filter(invoice__status=InvoiceStatus.FINALIZED).exists():
            raise InvoiceFinalized("Lines of a finalized invoice cannot change.")

    def delete(self):
        self._refuse_finalized()
        return super().delete()

    def update(self, **kwargs):
        self._refuse_finalized()
        return super().update(**kwargs)

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        invoice_ids = {line.invoice_id for line in objs}
        if Invoice.unscoped.filter(pk__in=invoice_ids, status=InvoiceStatus.FINALIZED).exists():
            raise InvoiceFinalized("Lines cannot be added to a finalized invoice.")
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs, fields, *args, **kwargs):
        objs = list(objs)
        if self.model.objects.filter(pk__in=[line.pk for line in objs],
                                     invoice__status=InvoiceStatus.FINALIZED).exists():
            raise InvoiceFinalized("Lines of a finalized invoice cannot change.")
        return super().bulk_update(objs, fields, *args, **kwargs)


class LineKind(models.TextChoices):
    BASE_FEE = "base_fee", "Monthly base fee"
    USAGE = "usage", "Usage"
    ADJUSTMENT = "adjustment", "Adjustment for an earlier month"


class InvoiceLine(models.Model):
    """One line: a component's usage of one deployment under one price version (or the
    base fee, or a late adjustment for an earlier month). `amount` is rounded once, to the
    cent, half-up; `tiers` shows how the quantity went through the tiers, unrounded."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16, choices=LineKind.choices)
    component = models.CharField(max_length=16, choices=Component.choices, blank=True)
    deployment_id = models.BigIntegerField(null=True, blank=True)
    deployment_name = models.CharField(max_length=63, blank=True)
    hardware = models.CharField(max_length=8, blank=True)
    price_version = models.ForeignKey(PriceVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    service_start = models.DateTimeField(help_text="Start of the usage it charges (UTC)")
    service_end = models.DateTimeField(help_text="End of the usage it charges (UTC), excluded")
    description = models.CharField(max_length=200)
    quantity = models.DecimalField(max_digits=24, decimal_places=9)
    unit = models.CharField(max_length=32, blank=True, help_text="e.g. 1,000 requests, second, GB-hour")
    unit_price = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True,
                                     help_text="The price per unit when one tier applies; empty when several do")
    tiers = models.JSONField(default=list, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    objects = InvoiceLineQuerySet.as_manager()

    class Meta:
        ordering = ["invoice", "position"]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"

    def _refuse_finalized(self):
        if Invoice.unscoped.filter(pk=self.invoice_id, status=InvoiceStatus.FINALIZED).exists():
            raise InvoiceFinalized("Lines of a finalized invoice cannot change.")

    def save(self, *args, **kwargs):
        self._refuse_finalized()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._refuse_finalized()
        return super().delete(*args, **kwargs)


class CreditNote(TenantOwned):
    """A correction to a finalized invoice: money given back, numbered like invoices."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=32, unique=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    reason = models.CharField(max_length=300)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.number} ({self.amount})"


class SpendAlert(TenantOwned):
    """A tenant's spend passing 50, 80 or 100% of its limit in a month: raised once each."""

    period = models.CharField(max_length=6, help_text="YYYYMM (UTC)")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the spend limit: 50, 80 or 100")
    spent = models.DecimalField(max_digits=14, decimal_places=2)
    spend_limit = models.DecimalField(max_digits=12, decimal_places=2)
    emailed_to = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "period", "threshold"], name="spendalert_once")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.period} {self.threshold}%"


class StripeMeterEventState(models.TextChoices):
    PENDING = "pending", "To send"
    SENT = "sent", "Sent as a meter event"
    INVOICE_ITEM = "invoice_item", "Sent as an invoice item (too old for a meter event)"


class StripeMeterEvent(TenantOwned):
    """What the Stripe sync owes Stripe for one tenant, component and hour, from the
    rollups: a meter event with a deterministic identifier, so that sending it twice is
    harmless. A late change to an hour already sent is a further row for the difference
    (identifier suffixed -a<n>)."""

    component = models.CharField(max_length=16, choices=Component.choices)
    hour = models.DateTimeField()
    identifier = models.CharField(max_length=100, unique=True)
    value = models.DecimalField(max_digits=24, decimal_places=6, help_text="In the Stripe meter's unit")
    state = models.CharField(max_length=16, choices=StripeMeterEventState.choices,
                             default=StripeMeterEventState.PENDING)
    stripe_invoice_item_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwned.Meta):
        ordering = ["hour", "component"]
        indexes = [models.Index(fields=["state", "hour"], name="stripe_meter_event_state")]

    def __str__(self) -> str:
        return self.identifier


class StripeWebhookEvent(models.Model):
    """A Stripe webhook event received and verified; handled once per event id."""

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class StripeObjectKind(models.TextChoices):
    METER = "meter", "Meter (key: component)"
    PRICE = "price", "Price (key: <price version id>-<component or base_fee>)"
    SUBSCRIPTION = "subscription", "Subscription (key: tenant id)"
    CURSOR = "cursor", "How far the meter event outbox has read the rollups (key: meter_events)"


class StripeObject(models.Model):
    """What the Stripe sync has made in Stripe and must find again: a meter per component,
    a price per price version × component, a subscription per tenant (`data` holds its
    price version and its items), and the outbox's read position (billing/stripe_sync)."""

    kind = models.CharField(max_length=16, choices=StripeObjectKind.choices)
    key = models.CharField(max_length=64)
    stripe_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "key"]
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="stripeobject_unique_key")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.stripe_id}"
