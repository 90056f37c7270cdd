from django.conf import settings
from django.db import models

from tenants.models import slug_validator
from tenants.scoping import TenantOwned


class TritonServer(models.Model):
    """A Triton Inference Server the platform drives. Local ones register themselves
    when started (`manage.py triton_serve`); external ones are added in the admin."""

    name = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    http_url = models.URLField(help_text="e.g. http://127.0.0.1:8100")
    grpc_url = models.CharField(max_length=200, blank=True, help_text="host:port of the gRPC endpoint")
    repository_path = models.CharField(
        max_length=500, help_text="The server's model repository, as the workers see it (they write entries here)"
    )
    backends = models.JSONField(default=list, help_text='Backends the server has, e.g. ["python", "onnxruntime"]')
    has_gpu = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    healthy = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.http_url})"


class DeploymentState(models.TextChoices):
    PENDING = "pending", "Pending"
    LOADING = "loading", "Loading"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    UNLOADING = "unloading", "Undeploying"
    UNDEPLOYED = "undeployed", "Undeployed"


ACTIVE_STATES = [DeploymentState.PENDING, DeploymentState.LOADING, DeploymentState.READY,
                 DeploymentState.FAILED, DeploymentState.UNLOADING]


class Deployment(TenantOwned):
    """A model version served under a tenant-chosen name. Undeployed rows stay as history."""

    name = models.CharField(max_length=63, validators=[slug_validator],
                            help_text="The model name clients use in the gateway URL")
    model_version = models.ForeignKey("graph_editor.ModelVersion", on_delete=models.PROTECT, related_name="deployments")
    server = models.ForeignKey(TritonServer, null=True, blank=True, on_delete=models.SET_NULL, related_name="deployments")
    state = models.CharField(max_length=16, choices=DeploymentState.choices, default=DeploymentState.PENDING)
    instances = models.PositiveSmallIntegerField(default=1, help_text="Triton model instances")
    hardware = models.CharField(max_length=8, default="cpu", help_text="cpu or gpu")
    max_batch_size = models.PositiveIntegerField(default=64, help_text="Largest batch the dynamic batcher forms "
                                                                       "(0 for models without a batch dimension)")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    load_seconds = models.FloatField(null=True, blank=True, help_text="Duration of the last Triton load")

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], condition=~models.Q(state="undeployed"), name="deployment_unique_active_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.state}]"

    @property
    def triton_name(self) -> str:
        """The namespaced name inside Triton: tenants never see or choose it."""
        return f"t{self.tenant_id}--{self.name}--d{self.pk}"

    @property
    def is_routable(self) -> bool:
        return self.state != DeploymentState.UNDEPLOYED

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES
