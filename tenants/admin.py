from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from gateway.contract.errors import PlatformError, validation_message
from tenants.models import (
    DEPLOY_LIMITS,
    REQUEST_LIMITS,
    ApiKey,
    Enforcement,
    Hardware,
    Membership,
    Plan,
    Quota,
    QuotaLevel,
    Tenant,
)
from tenants.quotas import (
    ENFORCEMENT_OF,
    LIMIT_FIELDS,
    plan_save,
    quota_clear,
    quota_effective,
    quota_set,
    tenant_plan_set,
)
from tenants.services import api_key_revoke, tenant_create


class ServiceErrorsAsFormErrors:
    """For admins that save through services: an error the service raises (its own
    checks, or the model's full_clean) is shown on the form, as a validation error
    would be, instead of a 500. The failed save is rolled back with the admin's
    transaction; the form is then validated again with the error attached."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (PlatformError, ValidationError) as exc:
            request.service_error = exc.message if isinstance(exc, PlatformError) else validation_message(exc)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        error = getattr(request, "service_error", None)
        if error is None:
            return form

        class WithServiceError(form):
            def clean(self):
                super().clean()
                raise ValidationError(error)

        return WithServiceError


def limits_summary(values: dict) -> str:
    """The limits that are set, briefly: "200 req/s · burst 400 · 64 in flight"."""
    labels = {"rate_per_second": "{} req/s", "rate_burst": "burst {}", "max_concurrency": "{} in flight",
              "monthly_requests": "{} req/month", "monthly_compute_seconds": "{} compute s/month",
              "max_payload_bytes": "{} B payload", "max_models": "{} models", "max_deployments": "{} deployments",
              "max_instances": "{} instances", "max_model_memory_mb": "{} MB memory", "max_batch_size": "batch {}"}
    parts = [label.format(_number(values[field])) for field, label in labels.items() if values.get(field) is not None]
    if values.get("allowed_hardware"):
        parts.append("/".join(values["allowed_hardware"]))
    return " · ".join(parts) or "no limits"


class HardwareChoiceField(forms.MultipleChoiceField):
    """allowed_hardware as check boxes; none ticked is no limit."""

    def __init__(self, **kwargs):
        super().__init__(choices=Hardware.choices, required=False, widget=forms.CheckboxSelectMultiple,
                         help_text="None ticked: any hardware", **kwargs)

    def clean(self, value):
        return super().clean(value) or None


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Tenant)
class TenantAdmin(ServiceErrorsAsFormErrors, admin.ModelAdmin):
    """A tenant's plan changes through tenant_plan_set and a new tenant is made by
    tenant_create, so the gateway has its limits at once. Its own limits are a quota
    of level "tenant" (linked from the summary)."""

    list_display = ("name", "slug", "plan_name", "created_at")
    list_filter = ("plan",)
    search_fields = ("name", "slug")
    fields = ("name", "slug", "plan", "created_at", "effective_limits")
    readonly_fields = ("created_at", "effective_limits")
    list_select_related = ("plan",)
    inlines = (MembershipInline,)

    @admin.display(description="Plan", ordering="plan__name")
    def plan_name(self, tenant):
        return tenant.plan.name if tenant.plan_id else "(default)"

    @admin.display(description="Effective limits")
    def effective_limits(self, tenant):
        if tenant is None or tenant.pk is None:
            return "Shown once the tenant is saved."
        effective = quota_effective(tenant=tenant)
        own = Quota.objects.filter(level=QuotaLevel.TENANT, tenant=tenant).first()
        if own is not None:
            link = format_html('<a href="{}">Change this tenant\'s own limits</a>',
                               reverse("admin:tenants_quota_change", args=[own.pk]))
        else:
            link = format_html('<a href="{}?level=tenant&amp;tenant={}">Set limits for this tenant only</a>',
                               reverse("admin:tenants_quota_add"), tenant.pk)
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            ((field, _limit_display(effective["values"], field), effective["source"].get(field) or "")
             for field in LIMIT_FIELDS if field not in ("monthly_requests_enforcement", "monthly_compute_enforcement")),
        )
        plan = effective["plan"]
        return format_html('<p>Plan in force: <strong>{}</strong>. {}</p><table class="effective-limits">'
                           "<thead><tr><th>Limit</th><th>Value</th><th>From</th></tr></thead><tbody>{}</tbody>"
                           "</table>", plan.name if plan else "none", link, rows)

    def save_model(self, request, obj, form, change):
        if not change:
            tenant = tenant_create(name=obj.name, slug=obj.slug, plan=obj.plan)
            obj.pk, obj.created_at = tenant.pk, tenant.created_at
            obj._state.adding = False
            return
        obj.save(update_fields=["name", "slug"])
        if "plan" in form.changed_data:
            tenant_plan_set(tenant=obj, plan=obj.plan)


def _number(value) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def _limit_display(values: dict, field: str) -> str:
    value = values.get(field)
    if value is None:
        return "no limit"
    if isinstance(value, list):
        return ", ".join(value)
    if field in ENFORCEMENT_OF:
        return f"{_number(value)} ({values.get(ENFORCEMENT_OF[field]) or Enforcement.HARD})"
    return _number(value)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role", "tenant")
    search_fields = ("user__username", "user__email", "tenant__slug", "tenant__name")
    autocomplete_fields = ("user", "tenant")
    list_select_related = ("user", "tenant")


class ActiveFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return (("yes", "Active"), ("no", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created through the portal or the API, which show the secret once.
    Here they can be inspected, relabelled and revoked (through the service, so the
    gateway learns of it at once); the hash is never shown and nothing else is editable."""

    list_display = ("label", "prefix", "tenant", "scopes", "created_at", "last_used_at", "revoked_at")
    list_filter = (ActiveFilter, "tenant")
    search_fields = ("label", "prefix", "tenant__slug", "tenant__name")
    list_select_related = ("tenant",)
    fields = ("label", "tenant", "prefix", "scopes", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("tenant", "prefix", "scopes", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected keys", permissions=("change",))
    def revoke(self, request, queryset):
        for api_key in queryset.select_related("tenant"):
            api_key_revoke(tenant=api_key.tenant, key_id=api_key.pk)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


# ---- plans and quotas -----------------------------------------------------------------


class PlanQuotaForm(forms.ModelForm):
    allowed_hardware = HardwareChoiceField()

    class Meta:
        model = Quota
        fields = LIMIT_FIELDS


class PlanQuotaInline(admin.StackedInline):
    """The plan's limits, saved through quota_set by PlanAdmin.save_formset."""

    model = Quota
    fk_name = "plan"
    form = PlanQuotaForm
    fields = LIMIT_FIELDS
    extra = 1
    max_num = 1
    can_delete = False
    verbose_name = verbose_name_plural = "Limits of every tenant on this plan"


class PlanForm(forms.ModelForm):
    # Not the model field: one default at a time is kept by moving the flag (plan_save),
    # so the model's single-default constraint is not checked against the form.
    is_default = forms.BooleanField(required=False, label="Default plan",
                                    help_text="Given to tenants without a plan of their own. Ticking it here moves "
                                              "it from the current default.")

    class Meta:
        model = Plan
        fields = ("name", "slug")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["is_default"].initial = self.instance.is_default


@admin.register(Plan)
class PlanAdmin(ServiceErrorsAsFormErrors, admin.ModelAdmin):
    """Plans and their limits. Saves go through plan_save and quota_set, so the tenants
    on the plan get the new limits on the gateway once the change commits."""

    form = PlanForm
    list_display = ("name", "slug", "is_default", "tenant_count", "limits")
    search_fields = ("name", "slug")
    fields = ("name", "slug", "is_default", "created_at")
    readonly_fields = ("created_at",)
    inlines = (PlanQuotaInline,)

    def get_exclude(self, request, obj=None):
        return ("is_default",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("quota").annotate(tenants_on_plan=Count("tenants"))

    @admin.display(description="Tenants", ordering="tenants_on_plan")
    def tenant_count(self, plan):
        return plan.tenants_on_plan

    @admin.display(description="Limits")
    def limits(self, plan):
        quota = getattr(plan, "quota", None)
        return limits_summary({field: getattr(quota, field) for field in LIMIT_FIELDS}) if quota else "no limits"

    def has_delete_permission(self, request, obj=None):
        # Tenants without a plan of their own would be left without limits.
        return super().has_delete_permission(request, obj) and not (obj and obj.is_default)

    def save_model(self, request, obj, form, change):
        plan_save(plan=obj, is_default=form.cleaned_data["is_default"])

    def save_formset(self, request, form, formset, change):
        if formset.model is not Quota:
            return super().save_formset(request, form, formset, change)
        # What formset.save() would record, for the admin's change message.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for quota_form in formset.forms:
            if quota_form.has_changed():
                quota = quota_set(level=QuotaLevel.PLAN, target=form.instance,
                                  values={field: quota_form.cleaned_data[field] for field in LIMIT_FIELDS})
                formset.changed_objects.append((quota, quota_form.changed_data))


TARGET_FIELDS = {QuotaLevel.PLAN: "plan", QuotaLevel.TENANT: "tenant", QuotaLevel.DEPLOYMENT: "deployment",
                 QuotaLevel.KEY: "api_key"}


class QuotaForm(forms.ModelForm):
    """The level is chosen when the quota is added and then fixed, with its one target."""

    level = forms.ChoiceField(choices=QuotaLevel.choices, help_text="Then choose the one plan, tenant, deployment "
                                                                    "or API key it limits, and leave the others empty.")
    allowed_hardware = HardwareChoiceField()

    class Meta:
        model = Quota
        fields = ("plan", "tenant", "deployment", "api_key", *LIMIT_FIELDS)

    def clean(self):
        cleaned = super().clean()
        level = self.instance.level if self.instance.pk else cleaned.get("level")
        if not self.instance.pk and level:
            target_field = TARGET_FIELDS[level]
            if not cleaned.get(target_field):
                self.add_error(target_field, f"Choose the {self.fields[target_field].label.lower()} this quota limits.")
            for field in set(TARGET_FIELDS.values()) - {target_field}:
                if cleaned.get(field):
                    self.add_error(field, f"Leave this empty for a quota of level {level}.")
            if level == QuotaLevel.TENANT and cleaned.get("tenant") and Quota.objects.filter(
                    level=QuotaLevel.TENANT, tenant=cleaned["tenant"]).exists():
                self.add_error("tenant", "This tenant has its own quota already: change that one.")
        if level in (QuotaLevel.DEPLOYMENT, QuotaLevel.KEY):
            for field in DEPLOY_LIMITS:
                if cleaned.get(field) is not None:
                    self.add_error(field, "Deploy-time limits are set on plans and tenants only.")
        return cleaned


@admin.register(Quota)
class QuotaAdmin(ServiceErrorsAsFormErrors, admin.ModelAdmin):
    """Quotas at every level. Saved through quota_set and deleted through quota_clear,
    so the gateway enforces the change from the next request after it commits."""

    form = QuotaForm
    list_display = ("__str__", "level", "tenant", "limits", "updated_at")
    list_filter = ("level", "tenant")
    search_fields = ("plan__name", "plan__slug", "tenant__name", "tenant__slug", "deployment__name", "api_key__label",
                     "api_key__prefix")
    list_select_related = ("plan", "tenant", "deployment", "api_key")
    autocomplete_fields = ("plan", "tenant", "deployment", "api_key")

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            target = ("level", "plan", "tenant", "deployment", "api_key")
        else:
            target = ("level", TARGET_FIELDS[obj.level]) + (
                ("tenant",) if obj.level in (QuotaLevel.DEPLOYMENT, QuotaLevel.KEY) else ())
        fieldsets = [("Limits what", {"fields": target}),
                     ("Request limits", {"fields": REQUEST_LIMITS,
                                         "description": "Empty: no limit at this level."})]
        if obj is None or obj.level in (QuotaLevel.PLAN, QuotaLevel.TENANT):
            fieldsets.append(("Deploy-time limits", {"fields": DEPLOY_LIMITS,
                                                     "description": "Plans and tenants only."}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return ("level", "plan", "tenant", "deployment", "api_key") if obj else ()

    def get_exclude(self, request, obj=None):
        # The model's level is not editable; the form's own field chooses it on add.
        return ("level",)

    @admin.display(description="Limits")
    def limits(self, quota):
        return limits_summary({field: getattr(quota, field) for field in LIMIT_FIELDS})

    def save_model(self, request, obj, form, change):
        if change:
            level, target = obj.level, getattr(obj, TARGET_FIELDS[obj.level])
        else:
            level = form.cleaned_data["level"]
            target = form.cleaned_data[TARGET_FIELDS[level]]
        values = {field: form.cleaned_data[field] for field in LIMIT_FIELDS if field in form.cleaned_data}
        quota = quota_set(level=level, target=target, values=values)
        obj.pk = quota.pk
        obj.refresh_from_db()
        obj._state.adding = False

    def delete_model(self, request, obj):
        quota_clear(quota=obj)

    def delete_queryset(self, request, queryset):
        for quota in queryset:
            quota_clear(quota=quota)
from tenants import admin_audit  # noqa: E402, F401 (importing it registers the audit log admin)
