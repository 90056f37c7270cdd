from django.contrib import admin

from workers.models import Deployment, TritonServer


@admin.register(TritonServer)
class TritonServerAdmin(admin.ModelAdmin):
    list_display = ["name", "http_url", "grpc_url", "backends", "has_gpu", "enabled", "healthy", "last_seen_at"]
    list_filter = ["enabled", "healthy", "has_gpu"]
    search_fields = ["name", "http_url"]
    readonly_fields = ["healthy", "last_seen_at", "created_at"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "model_version", "state", "server", "ready_at", "load_seconds"]
    list_filter = ["state", "tenant", "server"]
    search_fields = ["name", "tenant__slug"]
    readonly_fields = ["state", "error", "ready_at", "load_seconds", "created_at", "updated_at"]
