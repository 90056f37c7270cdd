import hashlib
import json
from functools import cached_property
from pathlib import Path

from django.conf import settings
from django.db import models

from graph_editor.models import ModelVersion
from tenants.models import slug_validator
from tenants.scoping import TenantOwned


class TritonServer(models.Model):
    """A Triton Inference Server the platform drives. Local ones register themselves
    when started (`manage.py triton_serve`); external ones are added in the admin."""

    name = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    http_url = models.URLField(help_text="e.g. http://127.0.0.1:8100")
    grpc_url = models.CharField(max_length=200, blank=True, help_text="host:port of the gRPC endpoint")
    metrics_url = models.URLField(blank=True, help_text="Its Prometheus metrics, e.g. http://127.0.0.1:8102/metrics "
                                                        "(latency percentiles per model); blank when it has none")
    repository_path = models.CharField(
        max_length=500, help_text="The server's model repository, as the workers see it (they write entries here)"
    )
    backends = models.JSONField(default=list, help_text='Backends the server has, e.g. ["python", "onnxruntime"]')
    memory_mb = models.PositiveIntegerField(
        default=8192, help_text="Memory the server offers to models, in MB; placement keeps within it")
    gpus = models.PositiveSmallIntegerField(default=0, help_text="GPUs the server has (GPU deployments need one)")
    enabled = models.BooleanField(default=True)
    healthy = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.http_url})"

    @property
    def has_gpu(self) -> bool:
        return self.gpus > 0


class DeploymentState(models.TextChoices):
    PENDING = "pending", "Pending"
    LOADING = "loading", "Loading"
    READY = "ready", "Ready"
    COLD = "cold", "Scaled to zero"
    FAILED = "failed", "Failed"
    UNLOADING = "unloading", "Undeploying"
    UNDEPLOYED = "undeployed", "Undeployed"


ACTIVE_STATES = [DeploymentState.PENDING, DeploymentState.LOADING, DeploymentState.READY, DeploymentState.COLD,
                 DeploymentState.FAILED, DeploymentState.UNLOADING]
# States in which the gateway holds a call until the deployment is ready.
WAKING_STATES = [DeploymentState.PENDING, DeploymentState.LOADING, DeploymentState.COLD]


class KeepAlive(models.TextChoices):
    ADAPTIVE = "adaptive", "Adaptive (idle-time histogram)"
    FIXED = "fixed", "Fixed idle time"


class Executor(models.TextChoices):
    MODEL = "model", "The model version's file"
    FUSED = "fused", "The graph fused into one ONNX model"
    ENSEMBLE = "ensemble", "A Triton ensemble over the graph's steps"
    BLS = "bls", "A BLS orchestrator (Python backend) calling the graph's steps"


GRAPH_EXECUTORS = (Executor.FUSED, Executor.ENSEMBLE, Executor.BLS)


class Deployment(TenantOwned):
    """A model version or a graph version served under a tenant-chosen name. Undeployed
    rows stay as history. Code that needs what it serves (its file, size, signature,
    name) asks the `target_*` accessors, which answer for both kinds."""

    name = models.CharField(max_length=63, validators=[slug_validator],
                            help_text="The model name clients use in the gateway URL")
    model_version = models.ForeignKey("graph_editor.ModelVersion", on_delete=models.PROTECT, related_name="deployments",
                                      null=True, blank=True)
    graph_version = models.ForeignKey("graph_editor.GraphVersion", on_delete=models.PROTECT,
                                      related_name="deployments", null=True, blank=True)
    executor = models.CharField(max_length=8, choices=Executor.choices, default=Executor.MODEL,
                                help_text="How Triton runs it: a model version's file; a graph fused into one "
                                          "ONNX model (one session for the whole graph), or its steps as models of "
                                          "their own under an ensemble or a BLS orchestrator")
    state = models.CharField(max_length=16, choices=DeploymentState.choices, default=DeploymentState.PENDING)
    instances = models.PositiveSmallIntegerField(
        default=1, help_text="Triton model instances per replica now; the autoscaler moves it within "
                             "[max(1, min_instances), max_instances] with demand")
    min_instances = models.PositiveSmallIntegerField(
        default=0, help_text="0 scales to zero when idle; 1 or more keeps that many instances loaded")
    max_instances = models.PositiveSmallIntegerField(default=1, help_text="Most instances per replica under load")
    replicas = models.PositiveSmallIntegerField(
        default=1, help_text="Triton servers it runs on while warm; the gateway balances them")
    keepalive = models.CharField(max_length=8, choices=KeepAlive.choices, default=KeepAlive.ADAPTIVE)
    keepalive_idle_s = models.PositiveIntegerField(
        default=600, help_text="Fixed policy: seconds idle before scaling to zero (adaptive: while it learns)")
    max_queue_delay_us = models.PositiveIntegerField(
        default=500, help_text="Longest a request waits in the dynamic batcher for a batch to fill")
    preferred_batch_sizes = models.JSONField(default=list, blank=True,
                                             help_text="Batch sizes the dynamic batcher aims for")
    memory_mb = models.PositiveIntegerField(null=True, blank=True,
                                            help_text="Measured memory of one loaded replica, MB")
    keepalive_state = models.JSONField(default=dict, blank=True, help_text="The keep-alive policy's state")
    last_used_at = models.DateTimeField(null=True, blank=True, help_text="Last call seen by the autoscaler")
    hardware = models.CharField(max_length=8, default="cpu", help_text="cpu or gpu")
    node_instances = models.JSONField(
        default=dict, blank=True, help_text="Ensemble and bls executors: Triton instances of the unit running a node, "
                                            "by node id (a unit takes the most of its nodes'); others follow instances")
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
            ),
            models.CheckConstraint(
                condition=models.Q(model_version__isnull=False, graph_version__isnull=True)
                | models.Q(model_version__isnull=True, graph_version__isnull=False),
                name="deployment_one_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.state}]"

    @property
    def triton_name(self) -> str:
        """The namespaced name inside Triton: tenants never see or choose it."""
        return f"t{self.tenant_id}--{self.name}--d{self.pk}"

    @property
    def is_graph(self) -> bool:
        return self.graph_version_id is not None

    def target_signature(self) -> dict:
        """What it takes and returns: {inputs, outputs, has_batch_dim}. A graph is batched
        when every input and output has the batch dim (-1) first."""
        if not self.is_graph:
            version = self.model_version
            return {"inputs": version.inputs, "outputs": version.outputs, "has_batch_dim": version.has_batch_dim}
        version = self.graph_version
        tensors = [*version.inputs, *version.outputs]
        has_batch_dim = bool(tensors) and all(t["shape"] and t["shape"][0] == -1 for t in tensors)
        return {"inputs": version.inputs, "outputs": version.outputs, "has_batch_dim": has_batch_dim}

    @cached_property
    def target_size_bytes(self) -> int:
        """The weights it loads: a graph's are those of the model versions it names (its
        built-in ops weigh next to nothing)."""
        if not self.is_graph:
            return self.model_version.size_bytes
        ids = {n.get("model_version") for n in self.graph_version.spec.get("nodes", []) if n.get("kind") == "model"}
        sizes = ModelVersion.unscoped.filter(tenant_id=self.tenant_id, pk__in=ids).values_list("size_bytes", flat=True)
        return sum(sizes)

    @property
    def target_label(self) -> str:
        """What it serves, as people read it: "digits v1", "graph digits-pipeline v2"."""
        if self.is_graph:
            return f"graph {self.graph_version.graph.name} v{self.graph_version.number}"
        return f"{self.model_version.model.name} v{self.model_version.version}"

    def _compiled_name(self) -> str:
        """`d<id>-<digest of what it compiles>`: a file left by another database's deployment
        of the same id is never taken for this one's."""
        spec = json.dumps(self.graph_version.spec, sort_keys=True)
        digest = hashlib.sha256(f"{self.tenant_id}:{self.executor}:{spec}".encode()).hexdigest()[:16]
        return f"d{self.pk}-{digest}"

    @property
    def fused_path(self) -> Path:
        """Where a graph deployment's fused model is written, once (workers/services/fused.py)."""
        return Path(settings.MODEL_STORAGE_DIR) / "fused" / f"{self._compiled_name()}.onnx"

    @property
    def compiled_dir(self) -> Path:
        """Where a graph deployment's units are compiled, once (workers/services/units.py)."""
        return Path(settings.MODEL_STORAGE_DIR) / "compiled" / self._compiled_name()

    @property
    def runs_units(self) -> bool:
        """Its graph's steps are Triton models of their own, shared between deployments."""
        return self.executor in (Executor.ENSEMBLE, Executor.BLS)

    @property
    def server(self) -> TritonServer | None:
        """The server of its first ready replica (None when it has none)."""
        for replica in self.replicas_ready():
            return replica.server
        return None

    def replicas_ready(self) -> list["Replica"]:
        return [r for r in self.replica_set.all() if r.state == ReplicaState.READY]

    @property
    def is_routable(self) -> bool:
        return self.state != DeploymentState.UNDEPLOYED

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


class ReplicaState(models.TextChoices):
    LOADING = "loading", "Loading"
    READY = "ready", "Ready"


class Replica(models.Model):
    """A deployment loaded (or being loaded) on one Triton server. A cold deployment has none."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="replica_set")
    server = models.ForeignKey(TritonServer, on_delete=models.CASCADE, related_name="replicas")
    state = models.CharField(max_length=16, choices=ReplicaState.choices, default=ReplicaState.LOADING)
    instances = models.PositiveSmallIntegerField(default=1)
    memory_mb = models.PositiveIntegerField(help_text="Memory it holds on the server: estimated, then measured")
    created_at = models.DateTimeField(auto_now_add=True)
    loaded_at = models.DateTimeField(null=True, blank=True)
    load_seconds = models.FloatField(null=True, blank=True, help_text="Triton's load time")

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["deployment", "server"], name="replica_unique_server")]

    def __str__(self) -> str:
        return f"{self.deployment.triton_name} on {self.server.name} [{self.state}]"


class UnitHold(models.Model):
    """A deployment that needs one of a graph's units (a model version or a fused group of
    ops, a Triton model of its own) loaded on a server. A unit is loaded once per server,
    by its first holder, and unloaded when its last holder lets go: Triton itself would
    not keep it for another graph (unloading a composing model unloads every ensemble
    using it, server#4828)."""

    server = models.ForeignKey(TritonServer, on_delete=models.CASCADE, related_name="unit_holds")
    triton_name = models.CharField(max_length=200)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="unit_holds")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "triton_name", "deployment"],
                                               name="unit_hold_unique")]
        indexes = [models.Index(fields=["server", "triton_name"])]

    def __str__(self) -> str:
        return f"{self.triton_name} on {self.server_id} for deployment {self.deployment_id}"


class WarmReservation(TenantOwned):
    """Memory a deployment kept warm by `min_instances` held from `started_at` until
    `ended_at` (open while it still does): what the `reserved_gb_h` meter rolls up
    (billing/rollups.py). A change of what is reserved closes the open row and opens
    another, so the history is never rewritten (workers/services/reservations.py)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="warm_reservations")
    memory_mb = models.PositiveIntegerField(help_text="One replica's memory at min_instances, times replicas")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwned.Meta):
        ordering = ["started_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["deployment"], condition=models.Q(ended_at__isnull=True),
                                               name="warm_reservation_one_open")]
        indexes = [models.Index(fields=["started_at"], name="warm_reservation_start")]

    def __str__(self) -> str:
        return f"{self.deployment_id}: {self.memory_mb} MB from {self.started_at:%Y-%m-%d %H:%M}"
