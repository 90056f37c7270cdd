from django.contrib import admin

from graph_editor.models import MLModel, ModelVersion


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    fields = ["version", "size_bytes", "sha256", "opset", "has_batch_dim", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(MLModel)
class MLModelAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "tenant__slug"]
    inlines = [ModelVersionInline]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions are immutable: uploaded through the portal or the API, read-only here."""

    list_display = ["model", "version", "tenant", "size_bytes", "has_batch_dim", "created_at"]
    list_filter = ["tenant", "has_batch_dim"]
    search_fields = ["model__name", "sha256"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
