from django.contrib import admin, messages

from tenants.models import ApiKey, Membership, Tenant
from tenants.services import api_key_revoke


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    readonly_fields = ("created_at",)
    inlines = (MembershipInline,)


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
