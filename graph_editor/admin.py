import json

from django.contrib import admin
from django.utils.html import format_html

from graph_editor.models import Graph, GraphVersion, MLModel, ModelVersion
from graph_editor.services_graphs import graph_update


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


class GraphVersionInline(admin.TabularInline):
    model = GraphVersion
    extra = 0
    fields = ("number", "message", "author", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Graph)
class GraphAdmin(admin.ModelAdmin):
    """Graphs are made, versioned and deleted in the editor or through the API (which
    validate every version). Only the description is editable here, through the service
    that records the change."""

    list_display = ("name", "tenant", "created_by", "created_at", "updated_at")
    list_filter = ("tenant",)
    search_fields = ("name", "description", "tenant__slug")
    list_select_related = ("tenant", "created_by")
    fields = ("name", "tenant", "description", "created_by", "created_at", "updated_at")
    readonly_fields = ("name", "tenant", "created_by", "created_at", "updated_at")
    inlines = (GraphVersionInline,)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        graph_update(tenant=obj.tenant, graph_id=obj.pk, description=form.cleaned_data["description"])


@admin.register(GraphVersion)
class GraphVersionAdmin(admin.ModelAdmin):
    """Versions are immutable: saved from the editor or the API, read-only here."""

    list_display = ("graph", "number", "tenant", "author", "message", "created_at")
    list_filter = ("tenant",)
    search_fields = ("graph__name", "message", "tenant__slug")
    list_select_related = ("graph", "tenant", "author")
    fields = ("graph", "number", "tenant", "author", "message", "created_at", "signature", "spec_json")

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    @admin.display(description="Signature")
    def signature(self, version):
        return format_html("<pre>inputs:  {}\noutputs: {}</pre>", json.dumps(version.inputs),
                           json.dumps(version.outputs))

    @admin.display(description="Spec")
    def spec_json(self, version):
        return format_html("<pre>{}</pre>", json.dumps(version.spec, indent=2))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
