from django.contrib import admin

from billing.models import UsageEvent


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
