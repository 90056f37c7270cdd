from django.contrib import admin

from graph_editor.models import MLModel, ModelVersion


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    fields = ("version", "size_bytes", "sha256", "opset", "has_batch_dim", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(MLModel)
class MLModelAdmin(admin.ModelAdmin):
    """Models come from uploads (portal or API), and are deleted there too: that path
    refuses while a version is deployed and removes the files. Only the description is
    editable here."""

    list_display = ("name", "tenant", "created_by", "created_at")
    list_filter = ("tenant",)
    search_fields = ("name", "description", "tenant__slug")
    list_select_related = ("tenant", "created_by")
    fields = ("name", "tenant", "description", "created_by", "created_at")
    readonly_fields = ("name", "tenant", "created_by", "created_at")
    inlines = (ModelVersionInline,)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions are immutable: uploaded through the portal or the API, read-only here."""

    list_display = ("model", "version", "tenant", "size_bytes", "opset", "has_batch_dim", "created_at")
    list_filter = ("tenant", "has_batch_dim", "opset")
    search_fields = ("model__name", "sha256", "tenant__slug")
    list_select_related = ("model", "tenant")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
