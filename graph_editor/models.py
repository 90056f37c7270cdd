from django.conf import settings
from django.db import models

from tenants.models import slug_validator
from tenants.scoping import TenantOwned


class MLModel(TenantOwned):
    """A tenant's model: a name under which immutable versions are uploaded."""

    name = models.CharField(max_length=63, validators=[slug_validator])
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        verbose_name = "model"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="mlmodel_unique_name")]

    def __str__(self) -> str:
        return self.name


class ModelVersion(TenantOwned):
    """One uploaded ONNX file and its signature. Immutable once created."""

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    file_path = models.CharField(max_length=500, help_text="Relative to MODEL_STORAGE_DIR")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    format = models.CharField(max_length=16, default="onnx")
    opset = models.PositiveIntegerField(null=True)
    producer = models.CharField(max_length=120, blank=True)
    inputs = models.JSONField(help_text="[{name, datatype, shape}] with -1 for dynamic dims")
    outputs = models.JSONField()
    has_batch_dim = models.BooleanField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["model", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="modelversion_unique")]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ValueError("Model versions are immutable; upload a new version instead.")
        super().save(*args, **kwargs)

    @property
    def absolute_path(self):
        return settings.MODEL_STORAGE_DIR / self.file_path


class Graph(TenantOwned):
    """A tenant's compute graph: a name under which immutable versions of its spec are saved."""

    name = models.CharField(max_length=63, validators=[slug_validator])
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, help_text="Last rename, description change or new version")

    class Meta(TenantOwned.Meta):
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="graph_unique_name")]

    def __str__(self) -> str:
        return self.name


class GraphVersion(TenantOwned):
    """One saved spec of a graph, valid when it was saved, and the signature the validator
    gave it. Immutable once created: an edit is saved as the next number."""

    graph = models.ForeignKey(Graph, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(help_text="1, 2, ... within the graph")
    spec = models.JSONField(help_text="{nodes, edges}: the spec as the editor or the API sent it")
    message = models.CharField(max_length=1000, blank=True)
    inputs = models.JSONField(default=list, blank=True,
                              help_text="[{name, datatype, shape}] the graph takes; -1: the batch or a free dim")
    outputs = models.JSONField(default=list, blank=True, help_text="[{name, datatype, shape}] the graph returns")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["graph", "-number"]
        constraints = [models.UniqueConstraint(fields=["graph", "number"], name="graphversion_unique_number")]

    def __str__(self) -> str:
        return f"{self.graph.name} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ValueError("Graph versions are immutable; save a new version instead.")
        super().save(*args, **kwargs)
