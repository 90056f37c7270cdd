"""The audit log in the admin: staff read and filter every change to plans, quotas, API
keys and deployment settings, across tenants. Rows are written only by the services that
make the changes (tenants/audit.py), so here nothing can be added, changed or deleted."""
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from tenants.models import AuditLog, Surface


def value_display(value) -> str:
    """A recorded value as a person reads it: lists comma-separated, no value as a dash."""
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "(none)"
    return str(value)


def audit_changes_rows(entry: AuditLog) -> list[tuple[str, str, str]]:
    """(field, old, new) for each field the entry records, in field order."""
    old, new = entry.old_value or {}, entry.new_value or {}
    fields = sorted(old.keys() | new.keys())
    return [(field, value_display(old.get(field)), value_display(new.get(field))) for field in fields]


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "event_type", "object_repr", "tenant", "actor", "surface", "changes_summary")
    list_filter = ("surface", "event_type", "object_type", "tenant")
    date_hierarchy = "occurred_at"
    search_fields = ("object_repr", "acting_user__username", "acting_user__email")
    list_select_related = ("tenant", "acting_user", "acting_api_key")
    fields = ("occurred_at", "event_type", "object_type", "object_id", "object_repr", "tenant", "surface", "actor",
              "changes")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="By", ordering="acting_user__username")
    def actor(self, entry: AuditLog) -> str:
        if entry.acting_user_id:
            return entry.acting_user.username
        if entry.acting_api_key_id:
            return f"API key {entry.acting_api_key.prefix}… ({entry.acting_api_key.label})"
        return "the system" if entry.surface == Surface.SYSTEM else "–"

    @admin.display(description="Changes")
    def changes_summary(self, entry: AuditLog) -> str:
        return "; ".join(f"{field}: {old} → {new}" for field, old, new in audit_changes_rows(entry)) or "–"

    @admin.display(description="Changes")
    def changes(self, entry: AuditLog) -> str:
        rows = audit_changes_rows(entry)
        if not rows:
            return "–"
        return format_html('<table class="audit-changes"><thead><tr><th>Field</th><th>Old value</th>'
                           "<th>New value</th></tr></thead><tbody>{}</tbody></table>",
                           format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows))
