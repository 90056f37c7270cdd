"""Billing in the admin: usage (read-only), plans' price versions, invoices, credit notes
and billing accounts.

A price version in force (or past) is history that invoices were rated by: it is shown
read-only, and a price change is a new version. Every price change is in the audit log
(object type price_version). Invoices are written by rating alone: here they are read,
drafts re-rated, and finalized ones corrected by credit notes."""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing.documents import invoice_filename, invoice_pdf
from billing.invoicing import credit_note_create, invoice_rerate
from billing.models import (
    BillingAccount,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Price,
    PriceVersion,
    UsageEvent,
)
from billing.pricing import tiers_parse
from gateway.contract.errors import PlatformError
from tenants.admin import ServiceErrorsAsFormErrors
from tenants.audit import audit_record


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    """Usage is written by the metering consumer only, and billing relies on it: read-only."""

    list_display = ("occurred_at", "tenant", "deployment_name", "endpoint", "status", "latency_ms", "bytes_in",
                    "bytes_out", "request_id")
    list_filter = ("tenant", "status", "endpoint", "protocol")
    search_fields = ("request_id", "deployment_name", "tenant__slug")
    list_select_related = ("tenant",)
    date_hierarchy = "occurred_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline:
    """An inline shown, never edited."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# ---- price versions -----------------------------------------------------------------------


def version_in_force_or_past(version: PriceVersion | None) -> bool:
    return version is not None and version.pk is not None and version.effective_from <= timezone.now()


def price_version_values(version: PriceVersion) -> dict:
    """A version and its prices as the audit log records them (Decimals as strings)."""
    return {
        "plan": version.plan.slug,
        "effective_from": version.effective_from.isoformat(),
        "currency": version.currency,
        "base_fee": str(version.base_fee),
        "note": version.note,
        "prices": {price.component: {"free_allowance": str(price.free_allowance.normalize()), "tiers": price.tiers}
                   for price in version.prices.order_by("component")},
    }


class PriceForm(forms.ModelForm):
    class Meta:
        model = Price
        fields = ("component", "free_allowance", "tiers")
        help_texts = {"tiers": 'Graduated, beyond the allowance, e.g. [{"up_to": "1000", "unit_price": "0.40"}, '
                               '{"up_to": null, "unit_price": "0.25"}]; one tier with "up_to": null is a flat price.'}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # No tiers is for tiers_parse to explain, not a bare "required".
        self.fields["tiers"].required = False

    def clean_tiers(self):
        try:
            tiers = tiers_parse(self.cleaned_data.get("tiers"))
        except PlatformError as exc:
            raise ValidationError(exc.message) from None
        # Stored as the Decimal strings rating reads back, whatever numbers were typed.
        return [{"up_to": None if tier.up_to is None else str(tier.up_to), "unit_price": str(tier.unit_price)}
                for tier in tiers]

    def clean_free_allowance(self):
        allowance = self.cleaned_data["free_allowance"]
        if allowance is not None and allowance < 0:
            raise ValidationError("The free allowance cannot be negative.")
        return allowance


class PriceInline(admin.TabularInline):
    model = Price
    form = PriceForm
    extra = 1

    def has_add_permission(self, request, obj=None):
        return super().has_add_permission(request, obj) and not version_in_force_or_past(obj)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and not version_in_force_or_past(obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not version_in_force_or_past(obj)


class PriceVersionForm(forms.ModelForm):
    class Meta:
        model = PriceVersion
        fields = ("plan", "effective_from", "currency", "base_fee", "note")

    def clean_effective_from(self):
        # Usage before now may be rated already (and invoiced): prices change from now on.
        effective_from = self.cleaned_data["effective_from"]
        if effective_from is not None and effective_from <= timezone.now():
            raise ValidationError("Prices change from a moment to come: usage before now has been rated already. "
                                  "Choose a later date and time (UTC).")
        return effective_from

    def clean_currency(self):
        currency = (self.cleaned_data.get("currency") or "").strip().lower()
        if len(currency) != 3 or not currency.isalpha() or not currency.isascii():
            raise ValidationError("Give an ISO 4217 code of three letters, e.g. usd or eur.")
        return currency

    def clean_base_fee(self):
        base_fee = self.cleaned_data["base_fee"]
        if base_fee is not None and base_fee < 0:
            raise ValidationError("The base fee cannot be negative.")
        return base_fee


class PriceVersionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("upcoming", "Upcoming"), ("started", "In force or past"))

    def queryset(self, request, queryset):
        if self.value() == "upcoming":
            return queryset.filter(effective_from__gt=timezone.now())
        if self.value() == "started":
            return queryset.filter(effective_from__lte=timezone.now())
        return queryset


@admin.register(PriceVersion)
class PriceVersionAdmin(admin.ModelAdmin):
    """A plan's prices from a date. Upcoming versions may be changed or deleted; once a
    version takes effect it is read-only, and the audit log holds every change."""

    form = PriceVersionForm
    list_display = ("plan", "effective_from", "state", "currency", "base_fee", "note", "created_by")
    list_filter = ("plan", PriceVersionStateFilter)
    search_fields = ("plan__name", "plan__slug", "note")
    list_select_related = ("plan", "created_by")
    inlines = (PriceInline,)
    readonly_fields = ("state", "created_by", "created_at", "audit_history")
    ordering = ("plan", "-effective_from")

    @admin.display(description="State")
    def state(self, version: PriceVersion) -> str:
        if version.pk is None:
            return "New"
        return "In force or past (read-only)" if version_in_force_or_past(version) else "Upcoming"

    @admin.display(description="Audit log")
    def audit_history(self, version: PriceVersion) -> str:
        if version.pk is None:
            return "–"
        url = reverse("admin:tenants_auditlog_changelist")
        return format_html('<a href="{}?object_type=price_version&amp;object_id={}">Changes to this version</a>',
                           url, version.pk)

    def get_fields(self, request, obj=None):
        return ("plan", "effective_from", "currency", "base_fee", "note", *self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        if version_in_force_or_past(obj):
            return ("plan", "effective_from", "currency", "base_fee", "note", *self.readonly_fields)
        if obj is not None:
            return ("plan", *self.readonly_fields)
        return self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and not version_in_force_or_past(obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not version_in_force_or_past(obj)

    def get_actions(self, request):
        # The bulk delete would not ask each version whether it is in force.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request, obj, form, change):
        if change:
            before = PriceVersion.objects.select_for_update().get(pk=obj.pk)
            request.price_version_before = price_version_values(before)
        else:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        version = form.instance
        before = getattr(request, "price_version_before", None)
        audit_record(event_type="price_version.changed" if change else "price_version.created", target=version,
                     old=before, new=price_version_values(version))

    def delete_model(self, request, obj):
        audit_record(event_type="price_version.deleted", target=obj, old=price_version_values(obj))
        super().delete_model(request, obj)


# ---- invoices and credit notes ------------------------------------------------------------


class InvoiceLineInline(ReadOnlyInline, admin.TabularInline):
    model = InvoiceLine
    fields = ("position", "kind", "description", "deployment_name", "quantity", "unit", "unit_price", "tiers",
              "amount", "service_start", "service_end", "price_version")
    readonly_fields = fields
    ordering = ("position",)


class CreditNoteInline(ReadOnlyInline, admin.TabularInline):
    model = CreditNote
    fields = ("number", "amount", "reason", "created_by", "created_at")
    readonly_fields = fields


INVOICE_FIELDS = ("tenant", "period_start", "period_end", "currency", "status", "number", "total", "rated_at",
                  "rolled_through", "finalized_at", "stripe_invoice_id", "created_at", "pdf")


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    """Invoices as rating wrote them: read-only. A draft can be re-rated; a finalized
    invoice is corrected by a credit note."""

    list_display = ("__str__", "tenant", "period_start", "status", "number", "total", "currency", "rated_at")
    list_filter = ("status", "period_start", "tenant")
    search_fields = ("number", "tenant__slug", "tenant__name")
    list_select_related = ("tenant",)
    fields = INVOICE_FIELDS
    readonly_fields = INVOICE_FIELDS
    inlines = (InvoiceLineInline, CreditNoteInline)
    actions = ("rerate",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Every invoice's page is read-only (rating alone writes a draft); the list keeps the change
        # permission for the re-rate action.
        return super().has_change_permission(request, obj) and obj is None

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="PDF")
    def pdf(self, invoice: Invoice) -> str:
        if invoice.pk is None:
            return "–"
        return format_html('<a href="{}">{}</a>', reverse("admin:billing_invoice_pdf", args=[invoice.pk]),
                           invoice_filename(invoice, "pdf"))

    def get_urls(self):
        pdf = path("<int:invoice_id>/pdf/", self.admin_site.admin_view(self.pdf_view), name="billing_invoice_pdf")
        return [pdf, *super().get_urls()]

    def pdf_view(self, request, invoice_id: int):
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        invoice = get_object_or_404(Invoice.unscoped.select_related("tenant"), pk=invoice_id)
        response = HttpResponse(invoice_pdf(invoice=invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice_filename(invoice, "pdf")}"'
        return response

    @admin.action(description="Re-rate selected drafts", permissions=("change",))
    def rerate(self, request, queryset):
        rerated = 0
        for invoice in queryset.select_related("tenant").order_by("pk"):
            if invoice.status == InvoiceStatus.FINALIZED:
                self.message_user(request, f"{invoice} is finalized and was not re-rated: correct it with a credit "
                                           "note.", messages.ERROR)
                continue
            try:
                invoice_rerate(invoice=invoice, actor=request.user)
            except PlatformError as exc:
                self.message_user(request, f"{invoice}: {exc.message}", messages.ERROR)
                continue
            rerated += 1
        if rerated:
            self.message_user(request, f"Re-rated {rerated} draft(s).", messages.SUCCESS)


class CreditNoteForm(forms.ModelForm):
    class Meta:
        model = CreditNote
        fields = ("invoice", "amount", "reason")


@admin.register(CreditNote)
class CreditNoteAdmin(ServiceErrorsAsFormErrors, admin.ModelAdmin):
    """Credit notes are made through credit_note_create (numbered, checked against the
    invoice) and never changed or deleted."""

    form = CreditNoteForm
    list_display = ("number", "tenant", "invoice", "amount", "reason", "created_by", "created_at")
    list_filter = ("tenant",)
    search_fields = ("number", "invoice__number", "tenant__slug", "reason")
    list_select_related = ("tenant", "invoice", "created_by")
    raw_id_fields = ("invoice",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("invoice", "amount", "reason")
        return ("number", "tenant", "invoice", "amount", "reason", "created_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and obj is None

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        note = credit_note_create(invoice=form.cleaned_data["invoice"], amount=form.cleaned_data["amount"],
                                  reason=form.cleaned_data["reason"], actor=request.user)
        obj.pk, obj.tenant_id, obj.number, obj.created_at = note.pk, note.tenant_id, note.number, note.created_at
        obj._state.adding = False


# ---- billing accounts ---------------------------------------------------------------------


class BillingAccountForm(forms.ModelForm):
    class Meta:
        model = BillingAccount
        fields = ("email", "spend_limit_max")

    def clean_spend_limit_max(self):
        maximum = self.cleaned_data["spend_limit_max"]
        if maximum is None:
            return maximum
        if maximum < 0:
            raise ValidationError("The maximum cannot be negative.")
        limit = self.instance.spend_limit
        if limit is not None and limit > maximum:
            raise ValidationError(f"The owners' spend limit is {limit}, above this maximum: ask them to lower it "
                                  f"first, or allow at least {limit}.")
        return maximum


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    """A tenant's billing. Admins set the highest spend limit its owners may choose; the
    limit itself is the owners' (portal or API), and the Stripe fields are Stripe's."""

    form = BillingAccountForm
    list_display = ("tenant", "email", "spend_limit", "spend_limit_enforcement", "spend_limit_max", "past_due_since",
                    "stripe_customer_id")
    list_filter = ("spend_limit_enforcement",)
    search_fields = ("tenant__slug", "tenant__name", "email", "stripe_customer_id")
    list_select_related = ("tenant",)
    fields = ("tenant", "email", "spend_limit_max", "spend_limit", "spend_limit_enforcement", "past_due_since",
              "stripe_customer_id", "stripe_subscription_id", "stripe_subscription_status", "updated_at")
    readonly_fields = ("tenant", "spend_limit", "spend_limit_enforcement", "past_due_since", "stripe_customer_id",
                       "stripe_subscription_id", "stripe_subscription_status", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        before = BillingAccount.objects.select_for_update().get(pk=obj.pk)
        super().save_model(request, obj, form, change)
        audit_record(event_type="billing_account.changed", target=obj,
                     old={"email": before.email, "spend_limit_max": _money(before.spend_limit_max)},
                     new={"email": obj.email, "spend_limit_max": _money(obj.spend_limit_max)})


def _money(value) -> str | None:
    return None if value is None else str(value)
