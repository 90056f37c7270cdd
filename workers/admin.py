from django.contrib import admin, messages
from django.db import models

from gateway.contract.errors import PlatformError
from workers.models import Deployment, Replica, TritonServer
from workers.services import (
    deployment_retry,
    deployment_scale_to_zero,
    deployment_undeploy,
)


@admin.register(TritonServer)
class TritonServerAdmin(admin.ModelAdmin):
    """Local servers register themselves; external ones are added here."""

    list_display = ("name", "http_url", "grpc_url", "backends", "memory_mb", "gpus", "enabled", "healthy",
                    "last_seen_at")
    list_filter = ("enabled", "healthy", "gpus")
    search_fields = ("name", "http_url")
    readonly_fields = ("healthy", "last_seen_at", "created_at")
    # Triton servers usually speak plain HTTP inside the cluster.
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}


class ReplicaInline(admin.TabularInline):
    model = Replica
    extra = 0
    can_delete = False
    fields = readonly_fields = ("server", "state", "instances", "memory_mb", "loaded_at", "load_seconds")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    """Deployments are driven by the lifecycle services (they load and unload Triton and
    keep the gateway's routes): created by tenants, undeployed or retried here through
    the actions, never edited or deleted directly."""

    list_display = ("name", "tenant", "model_version", "state", "instances", "min_instances", "max_instances",
                    "keepalive", "ready_at", "load_seconds")
    list_filter = ("state", "tenant", "keepalive")
    search_fields = ("name", "tenant__slug", "model_version__model__name", "error")
    list_select_related = ("tenant", "model_version__model")
    inlines = [ReplicaInline]
    actions = ("undeploy", "retry", "scale_to_zero")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_lifecycle_permission(self, request) -> bool:
        return request.user.has_perm("workers.change_deployment")

    def _apply(self, request, queryset, service, verb: str) -> None:
        done = 0
        for deployment in queryset.select_related("tenant"):
            try:
                service(tenant=deployment.tenant, deployment_id=deployment.pk)
            except PlatformError as exc:
                self.message_user(request, f"Deployment '{deployment.name}': {exc.message}", messages.WARNING)
            else:
                done += 1
        if done:
            self.message_user(request, f"{verb} {done} deployment(s).", messages.SUCCESS)

    @admin.action(description="Undeploy selected deployments", permissions=("lifecycle",))
    def undeploy(self, request, queryset):
        self._apply(request, queryset, deployment_undeploy, "Undeploying")

    @admin.action(description="Retry selected failed deployments", permissions=("lifecycle",))
    def retry(self, request, queryset):
        self._apply(request, queryset, deployment_retry, "Retrying")

    @admin.action(description="Scale selected deployments to zero now", permissions=("lifecycle",))
    def scale_to_zero(self, request, queryset):
        self._apply(request, queryset, deployment_scale_to_zero, "Scaling to zero")
