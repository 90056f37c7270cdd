from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from gateway.contract.errors import NotFound
from portal.api_base import ErrorSerializer, TenantAPIView, query_data, with_errors
from tenants.models import Hardware
from workers.graph_status import deployment_graph_status
from workers.models import Deployment, Executor, KeepAlive
from workers.selectors import coldstart_stats, deployment_get, deployment_list
from workers.services import (
    deployment_create,
    deployment_scale_to_zero,
    deployment_settings_update,
    deployment_undeploy,
)


class ReplicaSerializer(serializers.Serializer):
    server = serializers.CharField(source="server.name")
    state = serializers.CharField()
    instances = serializers.IntegerField()
    memory_mb = serializers.IntegerField(help_text="Estimated until loaded, then measured where the server is local")
    loaded_at = serializers.DateTimeField(allow_null=True)
    load_seconds = serializers.FloatField(allow_null=True, help_text="Triton's own load time")


class ColdStartSerializer(serializers.Serializer):
    requests = serializers.IntegerField(help_text="Metered inference requests")
    cold_starts = serializers.IntegerField(help_text="Requests held while the deployment loaded from zero")
    share = serializers.FloatField(help_text="cold_starts / requests")
    p50_ms = serializers.FloatField(allow_null=True, help_text="Median time a cold request was held")
    p99_ms = serializers.FloatField(allow_null=True)


class DeploymentSerializer(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version_id", allow_null=True,
                                             help_text="The model version it serves (null for a graph)")
    model_name = serializers.CharField(source="model_version.model.name", allow_null=True)
    version = serializers.IntegerField(source="model_version.version", allow_null=True)
    graph_version = serializers.IntegerField(source="graph_version_id", allow_null=True,
                                             help_text="The graph version it serves (null for a model)")
    graph_name = serializers.CharField(source="graph_version.graph.name", allow_null=True)
    graph_version_number = serializers.IntegerField(source="graph_version.number", allow_null=True)
    executor = serializers.ChoiceField(choices=Executor.choices, read_only=True,
                                       help_text="model: the model version's file; fused: the graph fused into one "
                                                 "ONNX model, one session for the whole graph")
    server = serializers.SerializerMethodField(help_text="The Triton server of its first ready replica, if any")
    placement = serializers.SerializerMethodField(help_text="Its replicas: where it is loaded (none when cold)")
    hardware = serializers.ChoiceField(choices=Hardware.choices, read_only=True)
    infer_url = serializers.SerializerMethodField(help_text="The gateway URL to call it (KServe v2 infer)")
    cold_starts = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = ("id", "name", "model_version", "model_name", "version", "graph_version", "graph_name",
                  "graph_version_number", "executor", "state", "error", "hardware",
                  "instances", "min_instances", "max_instances", "replicas", "keepalive", "keepalive_idle_s",
                  "node_instances", "max_batch_size", "max_queue_delay_us", "preferred_batch_sizes", "memory_mb",
                  "server",
                  "placement", "created_at", "updated_at", "ready_at", "last_used_at", "load_seconds", "infer_url",
                  "cold_starts")
        read_only_fields = fields
        extra_kwargs = {"error": {"help_text": "Why it failed, or what it waits for"},
                        "instances": {"help_text": "Triton instances per replica now (the autoscaler moves it)"}}

    def get_server(self, deployment) -> str | None:
        server = deployment.server
        return server.name if server else None

    @extend_schema_field(ReplicaSerializer(many=True))
    def get_placement(self, deployment):
        return ReplicaSerializer(deployment.replica_set.all(), many=True).data

    def get_infer_url(self, deployment) -> str:
        return f"{settings.GATEWAY_URL}/v2/models/{deployment.name}/infer"

    @extend_schema_field(ColdStartSerializer)
    def get_cold_starts(self, deployment):
        stats = self.context.get("cold_starts")
        if stats is None:
            stats = coldstart_stats(tenant=deployment.tenant, deployment_ids=[deployment.pk])
        return stats.get(deployment.pk)


def serialized(deployments, *, many: bool = False):
    items = list(deployments) if many else [deployments]
    stats = coldstart_stats(tenant=items[0].tenant, deployment_ids=[d.pk for d in items]) if items else {}
    return DeploymentSerializer(deployments, many=many, context={"cold_starts": stats}).data


class ScalingSerializer(serializers.Serializer):
    """Scaling and batching settings; each one left out keeps its value (or its default)."""

    min_instances = serializers.IntegerField(min_value=0, max_value=32767, required=False,
                                             help_text="0 scales to zero when idle; 1 or more stays warm")
    max_instances = serializers.IntegerField(min_value=1, max_value=32767, required=False,
                                             help_text="Most Triton instances per replica under load")
    node_instances = serializers.DictField(
        child=serializers.IntegerField(min_value=1, max_value=32767), required=False,
        help_text="Graphs under the ensemble or bls executor: Triton instances of the unit that runs a node, by node "
                  "id, each at most max_instances (a unit takes the most of its nodes'; the others follow `instances`)."
                  " A unit another deployment also holds keeps the instances it was loaded with")
    replicas = serializers.IntegerField(min_value=1, max_value=16, required=False,
                                        help_text="Triton servers it runs on while warm")
    keepalive = serializers.ChoiceField(choices=KeepAlive.choices, required=False,
                                        help_text="adaptive: per-deployment idle-time histogram with pre-warm; "
                                                  "fixed: keepalive_idle_s after the last call")
    keepalive_idle_s = serializers.IntegerField(min_value=1, max_value=7 * 24 * 3600, required=False)
    max_batch_size = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False, allow_null=True,
        help_text="Largest batch the dynamic batcher forms; by default 64 for models with a batch dimension and 0 "
                  "(no batching) for models without one, which cannot batch",
    )
    max_queue_delay_us = serializers.IntegerField(min_value=0, max_value=10_000_000, required=False)
    preferred_batch_sizes = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False,
                                                  max_length=32)


class DeploymentCreateSerializer(ScalingSerializer):
    """The target is exactly one of model_version and graph_version."""

    model_version = serializers.IntegerField(required=False, help_text="Id of one of your model versions")
    graph_version = serializers.IntegerField(
        required=False, help_text="Id of one of your graph versions (instead of model_version): the whole graph is "
                                  "served as one endpoint, fused into one ONNX model")
    name = serializers.CharField(required=False, allow_blank=True, default="",
                                 help_text="Name clients use in the gateway URL; defaults to the model's or the "
                                           "graph's name")
    instances = serializers.IntegerField(min_value=1, max_value=32767, required=False,
                                         help_text="Triton instances to start with (default max(1, min_instances)); "
                                                   "max_instances defaults to it. Your plan sets the most")
    hardware = serializers.ChoiceField(choices=Hardware.choices, default=Hardware.CPU,
                                       help_text="Where it runs; your plan says which hardware it includes")
    executor = serializers.ChoiceField(
        choices=["auto", "fused", "ensemble", "bls"], default="auto",
        help_text="How a graph version runs: `fused` into one ONNX model (one hop, fastest; each graph holds its own "
                  "copy of the weights), `ensemble` (its steps as Triton models shared with other graphs; no switch), "
                  "`bls` (the same, under an orchestrator that also runs switches and skips an untaken branch), or "
                  "`auto`: fused while its models weigh at most GRAPH_FUSE_MAX_MB (64 MB), else ensemble, or bls "
                  "for a graph with a switch. Model versions take only `auto`")

    def validate(self, data):
        # Naming neither reads as it always did: model_version is the usual target.
        if "model_version" not in data and "graph_version" not in data:
            raise serializers.ValidationError({"model_version": "This field is required."})
        if "model_version" in data and "graph_version" in data:
            raise serializers.ValidationError("Deploy either a model version or a graph version: give exactly one "
                                              "of model_version and graph_version.")
        return data


QUOTA_403 = ("The key lacks the 'manage' scope, the signed-in role is read-only, or the deployment is beyond the "
             "tenant's limits (code quota_exceeded)")


class DeploymentListQuerySerializer(serializers.Serializer):
    history = serializers.BooleanField(default=False, help_text="Include undeployed deployments")


class DeploymentListView(TenantAPIView):
    @extend_schema(parameters=[DeploymentListQuerySerializer],
                   responses=with_errors({200: DeploymentSerializer(many=True)}, 400),
                   summary="List deployments, newest first")
    def get(self, request):
        query = DeploymentListQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        deployments = deployment_list(tenant=self.tenant, include_history=query.validated_data["history"])
        return Response(serialized(deployments, many=True))

    @extend_schema(request=DeploymentCreateSerializer,
                   responses={**with_errors({202: DeploymentSerializer}, 400, 404, 409),
                              403: OpenApiResponse(ErrorSerializer, description=QUOTA_403)},
                   examples=[OpenApiExample("A model version", value={"model_version": 12, "name": "digits"},
                                            request_only=True),
                             OpenApiExample("A graph version", value={"graph_version": 3, "name": "digits-pipeline"},
                                            request_only=True)],
                   summary="Deploy a model version or a graph version",
                   description="Returns at once with state `pending`; poll the deployment until it is "
                   "`ready` (or `failed`, with the reason in `error`). A deployment beyond your plan's limits "
                   "(deployments, instances, hardware, batch size, model memory) is refused with 403 "
                   "`quota_exceeded`. A graph version (`graph_version`) is served as one endpoint: its signature "
                   "is the graph's inputs and outputs, and each call is one usage event.")
    def post(self, request):
        payload = DeploymentCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        deployment = deployment_create(tenant=self.tenant, model_version_id=data.pop("model_version", None),
                                       graph_version_id=data.pop("graph_version", None), name=data.pop("name"),
                                       instances=data.pop("instances", None), hardware=data.pop("hardware"),
                                       executor=data.pop("executor"),
                                       actor=self.actor, **data)
        deployment = deployment_get(tenant=self.tenant, deployment_id=deployment.pk)
        return Response(serialized(deployment), status=status.HTTP_202_ACCEPTED)


class DeploymentDetailView(TenantAPIView):
    @extend_schema(responses=with_errors({200: DeploymentSerializer}, 404),
                   summary="A deployment and its live state")
    def get(self, request, deployment_id: int):
        return Response(serialized(deployment_get(tenant=self.tenant, deployment_id=deployment_id)))

    @extend_schema(request=ScalingSerializer,
                   responses={**with_errors({200: DeploymentSerializer}, 400, 404, 409),
                              403: OpenApiResponse(ErrorSerializer, description=QUOTA_403)},
                   summary="Change scaling and batching settings",
                   description="Within your plan's limits (403 `quota_exceeded` beyond them). Batching changes "
                   "reach Triton by a reload that keeps serving; raising `min_instances` wakes a cold deployment.")
    def patch(self, request, deployment_id: int):
        payload = ScalingSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        changes = dict(payload.validated_data)
        if changes.get("max_batch_size", 0) is None:
            changes.pop("max_batch_size")
        deployment_settings_update(tenant=self.tenant, deployment_id=deployment_id, **changes)
        return Response(serialized(deployment_get(tenant=self.tenant, deployment_id=deployment_id)))

    @extend_schema(responses=with_errors({202: DeploymentSerializer}, 404),
                   summary="Undeploy",
                   description="Returns at once with state `unloading`; the deployment is unloaded from "
                   "Triton and ends `undeployed` (listed with `?history=1`); then its name is free again.")
    def delete(self, request, deployment_id: int):
        deployment_undeploy(tenant=self.tenant, deployment_id=deployment_id)
        deployment = deployment_get(tenant=self.tenant, deployment_id=deployment_id)
        return Response(serialized(deployment), status=status.HTTP_202_ACCEPTED)


class DeploymentUnloadView(TenantAPIView):
    @extend_schema(request=None, responses=with_errors({202: DeploymentSerializer}, 404, 409),
                   summary="Scale to zero now",
                   description="Unloads the deployment from Triton at once (it turns `cold`); the next call wakes "
                   "it, held by the gateway while it loads. 409 when it is not ready, or min_instances keeps it "
                   "warm.")
    def post(self, request, deployment_id: int):
        deployment_scale_to_zero(tenant=self.tenant, deployment_id=deployment_id)
        deployment = deployment_get(tenant=self.tenant, deployment_id=deployment_id)
        return Response(serialized(deployment), status=status.HTTP_202_ACCEPTED)


class GraphUnitSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The node it runs, or its nodes joined by '+' for a fused group")
    kind = serializers.ChoiceField(choices=["fused", "model", "segment", "ensemble", "orchestrator"],
                                   help_text="fused: the whole graph in one model; model: a model node; segment: a "
                                             "group of built-in ops fused into one model; ensemble / orchestrator: "
                                             "the model that runs the others")
    nodes = serializers.ListField(child=serializers.CharField())
    state = serializers.ChoiceField(choices=["loaded", "loading", "cold", "failed"])
    calls = serializers.IntegerField(help_text="Successful executions (Triton's statistics, cumulative)")
    failures = serializers.IntegerField()
    success_ns = serializers.IntegerField(help_text="Total time of the successful executions, ns")
    mean_ms = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True, help_text="Triton's median request latency over its recent "
                                                               "window; null before any call")
    shared = serializers.BooleanField(help_text="Loaded once for several deployments: its statistics count all")


class GraphNodeStateSerializer(serializers.Serializer):
    unit = serializers.CharField()
    state = serializers.CharField()
    fused = serializers.BooleanField(help_text="Runs in one Triton model with other nodes")


class GraphStatusSerializer(serializers.Serializer):
    deployment = serializers.IntegerField()
    executor = serializers.CharField()
    state = serializers.CharField()
    units = GraphUnitSerializer(many=True)
    nodes = serializers.DictField(child=GraphNodeStateSerializer())


class DeploymentNodesView(TenantAPIView):
    @extend_schema(responses=with_errors({200: GraphStatusSerializer}, 404),
                   summary="A graph deployment's nodes: where each runs, its state and Triton's statistics",
                   examples=[OpenApiExample("A fused graph", response_only=True, value={
                       "deployment": 12, "executor": "fused", "state": "ready",
                       "units": [{"name": "fused", "kind": "fused", "nodes": ["prep", "clf", "top"],
                                  "state": "loaded", "calls": 10, "failures": 0, "success_ns": 13000000,
                                  "mean_ms": 1.3, "p50_ms": 1.2, "shared": False}],
                       "nodes": {"prep": {"unit": "fused", "state": "loaded", "fused": True}}})],
                   description="404 for a model deployment or another tenant's. Calls, failures and times are "
                   "Triton's cumulative statistics for each unit: the difference between two reads is what "
                   "happened in between.")
    def get(self, request, deployment_id: int):
        deployment = deployment_get(tenant=self.tenant, deployment_id=deployment_id)
        if not deployment.is_graph:
            raise NotFound("This deployment serves a model version, not a graph.")
        return Response(deployment_graph_status(deployment))
