"""Graphs and their versions through the REST API, the validator that answers without
saving, and the catalogue of built-in ops (the editor's palette)."""
from dataclasses import asdict

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from graph_editor.api import TensorSerializer
from graph_editor.graphs.ops import op_catalogue
from graph_editor.graphs.validate import graph_validate
from graph_editor.models import Graph, GraphVersion
from graph_editor.selectors import graph_get, graph_list, graph_version_get, graph_version_list
from graph_editor.services_graphs import graph_create, graph_delete, graph_update, graph_version_create
from portal.api_base import (
    ErrorDetailSerializer,
    LimitOffsetPagination,
    StrictCharField,
    TenantAPIView,
    with_errors,
)
from tenants.models import ApiKey
from tenants.permissions import IsTenantMember

NODE_KINDS = ["input", "output", "model", "op", "switch"]

SPEC_SCHEMA = {
    "type": "object",
    "description": "The graph: nodes and the edges between their ports ('<node id>.<port name>'). Any JSON is "
                   "accepted here; the validator reports what is wrong with it.",
    "properties": {
        "nodes": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "kind"],
            "properties": {
                "id": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,63}$",
                       "description": "Unique in the graph"},
                "kind": {"type": "string", "enum": NODE_KINDS},
                "tensors": {"type": "array", "items": {"type": "object"},
                            "description": "input nodes: the graph's inputs, [{name, datatype, shape}]; in a "
                                           "shape -1 is the batch or a free dim, a string a named dim"},
                "model_version": {"type": "integer", "description": "model nodes: the id of one of the tenant's "
                                                                    "model versions"},
                "op": {"type": "string", "description": "op nodes: a name from GET /api/v1/graphs/ops"},
                "params": {"type": "object", "description": "op and switch nodes: their parameters"},
                "position": {"type": "object", "description": "{x, y} on the editor's canvas; not validated"},
            },
        }},
        "edges": {"type": "array", "items": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {"from": {"type": "string", "example": "in.image"},
                           "to": {"type": "string", "example": "prep.x"}},
        }},
    },
    "required": ["nodes", "edges"],
}

EXAMPLE_SPEC = {
    "nodes": [
        {"id": "in", "kind": "input", "tensors": [{"name": "image", "datatype": "UINT8", "shape": [-1, 64]}]},
        {"id": "prep", "kind": "op", "op": "cast", "params": {"to": "FP32"}},
        {"id": "clf", "kind": "model", "model_version": 12},
        {"id": "out", "kind": "output"},
    ],
    "edges": [
        {"from": "in.image", "to": "prep.x"},
        {"from": "prep.y", "to": "clf.X"},
        {"from": "clf.label", "to": "out.label"},
    ],
}
EXAMPLE_INPUTS = [{"name": "image", "datatype": "UINT8", "shape": [-1, 64]}]
EXAMPLE_OUTPUTS = [{"name": "label", "datatype": "INT64", "shape": [-1]}]
EXAMPLE_PORTS = {
    "in.image": {"datatype": "UINT8", "shape": ["batch", 64]},
    "prep.x": {"datatype": "UINT8", "shape": ["batch", 64]},
    "prep.y": {"datatype": "FP32", "shape": ["batch", 64]},
    "clf.X": {"datatype": "FP32", "shape": ["batch", 64]},
    "clf.label": {"datatype": "INT64", "shape": ["batch"]},
    "clf.probabilities": {"datatype": "FP32", "shape": ["batch", 10]},
    "out.label": {"datatype": "INT64", "shape": ["batch"]},
}
EXAMPLE_ISSUE = {"code": "dtype_mismatch", "node": "clf", "port": "clf.X", "edge": 0,
                 "message": "edge 0 (in.image -> clf.X): clf.X takes FP32[batch, 64] but in.image gives "
                            "UINT8[batch, 64]: the datatype is UINT8, expected FP32; add a cast op (to FP32) between "
                            "them"}
EXAMPLE_GRAPH = {"id": 3, "name": "digits-pipeline", "description": "Cast, classify", "latest_version": 2,
                 "created_at": "2026-01-31T12:00:00Z", "updated_at": "2026-02-01T09:30:00Z"}
EXAMPLE_VERSION = {"id": 7, "number": 2, "message": "Cast before the classifier", "author": "alice",
                   "created_at": "2026-02-01T09:30:00Z", "spec": EXAMPLE_SPEC, "inputs": EXAMPLE_INPUTS,
                   "outputs": EXAMPLE_OUTPUTS}


def _example(name: str, value, *, request: bool = False, status_code: int = 200) -> OpenApiExample:
    if request:
        return OpenApiExample(name, value=value, request_only=True)
    return OpenApiExample(name, value=value, response_only=True, status_codes=[str(status_code)])


INVALID_GRAPH_EXAMPLE = _example("An edge between different datatypes", {"error": {
    "code": "invalid_graph", "message": EXAMPLE_ISSUE["message"], "errors": [EXAMPLE_ISSUE]}}, status_code=400)


@extend_schema_field(SPEC_SCHEMA)
class GraphSpecField(serializers.JSONField):
    """Any JSON: whatever is wrong with it is for the validator to say, issue by issue."""


# What /graphs/validate takes: any JSON at all, a draft half-drawn in the editor included.
# It answers 200 with every problem as an issue, so the schema must not refuse what the
# validator is there to explain (the saved spec's shape is GraphSpecField's).
@extend_schema_field({"description": "A graph spec, or a draft of one (see GraphVersionCreate.spec for its "
                                      "shape); whatever does not fit is reported as an issue"})
class GraphDraftField(serializers.JSONField):
    """Any JSON, for the validator to judge."""


@extend_schema_field({"type": "array", "items": {"oneOf": [{"type": "integer"}, {"type": "string"}]}})
class ShapeField(serializers.ListField):
    """Dims as ints (fixed; -1 unknown) or strings (symbolic: "batch", "n", ...)."""


class GraphIssueSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="e.g. cycle, unknown_op, dtype_mismatch, shape_mismatch, "
                                           "unconnected_input, model_version_not_found, invalid_spec")
    message = serializers.CharField(help_text="Names the node, port or edge and says what to change")
    node = serializers.CharField(allow_null=True, help_text="The node's id, when the problem is at a node")
    port = serializers.CharField(allow_null=True, help_text="The port at fault, as '<node id>.<port name>'")
    edge = serializers.IntegerField(allow_null=True, help_text="Index into the spec's edges")


class InvalidGraphDetailSerializer(ErrorDetailSerializer):
    errors = GraphIssueSerializer(many=True, required=False,
                                  help_text="With code invalid_graph: every problem the validator found")


class InvalidGraphSerializer(serializers.Serializer):
    error = InvalidGraphDetailSerializer()


def _with_graph_errors(ok: dict, *statuses: int) -> dict:
    """`with_errors`, where the 400 can be an invalid graph with its list of issues."""
    responses = with_errors(ok, *statuses)
    responses[400] = OpenApiResponse(
        InvalidGraphSerializer, examples=[INVALID_GRAPH_EXAMPLE],
        description="The request is invalid; for a spec the validator refused, code invalid_graph and every issue "
                    "in errors (nothing is saved)")
    return responses


class PortTypeSerializer(serializers.Serializer):
    datatype = serializers.CharField(help_text="KServe v2 datatype, e.g. FP32")
    shape = ShapeField(child=serializers.JSONField(), help_text="Symbolic dims as strings; -1 where unknown")


class GraphSerializer(serializers.ModelSerializer):
    latest_version = serializers.IntegerField(read_only=True, allow_null=True,
                                              help_text="The highest version number; null before the first save")

    class Meta:
        model = Graph
        fields = ("id", "name", "description", "created_at", "updated_at", "latest_version")
        read_only_fields = fields


class GraphCreateSerializer(serializers.Serializer):
    name = StrictCharField(help_text="1-63 lowercase letters, digits and hyphens; unique in the tenant")
    description = StrictCharField(required=False, allow_blank=True, default="")


class GraphUpdateSerializer(serializers.Serializer):
    name = StrictCharField(required=False, help_text="A new name: 1-63 lowercase letters, digits and hyphens")
    description = StrictCharField(required=False, allow_blank=True)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Give a 'name' or a 'description' to change.")
        return attrs


class GraphVersionSummarySerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", default=None, allow_null=True, read_only=True,
                                   help_text="Username of who saved it; null for a key or a deleted user")

    class Meta:
        model = GraphVersion
        fields = ("id", "number", "message", "author", "created_at")
        read_only_fields = fields


class GraphVersionSerializer(GraphVersionSummarySerializer):
    spec = GraphSpecField(read_only=True)
    inputs = TensorSerializer(many=True, read_only=True, help_text="The graph's inputs, as KServe clients send them")
    outputs = TensorSerializer(many=True, read_only=True, help_text="The graph's outputs")

    class Meta(GraphVersionSummarySerializer.Meta):
        fields = (*GraphVersionSummarySerializer.Meta.fields, "spec", "inputs", "outputs")
        read_only_fields = fields


class GraphVersionCreateSerializer(serializers.Serializer):
    spec = GraphSpecField(help_text="The graph to save; validated first")
    message = StrictCharField(required=False, allow_blank=True, default="", max_length=1000,
                                    help_text="What changed, as in a commit message")


class GraphValidateSerializer(serializers.Serializer):
    spec = GraphDraftField(help_text="The graph to check; nothing is saved")


class GraphCheckSerializer(serializers.Serializer):
    valid = serializers.BooleanField(help_text="True when errors is empty: the spec can be saved as a version")
    errors = GraphIssueSerializer(many=True)
    ports = serializers.DictField(child=PortTypeSerializer(), help_text="'<node>.<port>' -> its type, for every "
                                                                        "port whose type is known")
    inputs = TensorSerializer(many=True, help_text="The graph's inputs, as KServe clients send them")
    outputs = TensorSerializer(many=True, help_text="The graph's outputs")


class OpParamSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="number, integer, boolean, string, integer[], number[], string[] or "
                                           "number|number[]")
    required = serializers.BooleanField()
    default = serializers.JSONField(allow_null=True, help_text="The value when the param is left out")
    help = serializers.CharField()
    choices = serializers.ListField(child=serializers.JSONField(), required=False,
                                    help_text="The only values allowed, when the param has a fixed set")
    min = serializers.FloatField(required=False, help_text="The smallest value allowed")


class VariadicSerializer(serializers.Serializer):
    prefix = serializers.CharField(help_text="The ports are <prefix>0 .. <prefix>{n-1}")
    count_param = serializers.CharField(help_text="The param that gives n")


class OpSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="The name an op node gives in 'op' (for the switch: its kind)")
    kind = serializers.CharField(help_text="The node kind that uses it: op, or switch for the switch")
    doc = serializers.CharField()
    inputs = serializers.ListField(child=serializers.CharField(), help_text="Input port names")
    outputs = serializers.ListField(child=serializers.CharField(), help_text="Output port names")
    params = serializers.DictField(child=OpParamSerializer())
    accepts = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                    help_text="Input port -> the datatypes it takes")
    variadic = VariadicSerializer(required=False, help_text="concat only: its input ports are numbered")


class MayValidate(IsTenantMember):
    """Validating changes nothing, so it is a read: every signed-in member may, and a key
    needs the 'manage' scope as for any other call."""

    def has_permission(self, request, view):
        if not isinstance(request.auth, ApiKey) and getattr(request._request, "membership", None) is not None:
            return True
        return super().has_permission(request, view)


class GraphListView(TenantAPIView, generics.ListAPIView):
    serializer_class = GraphSerializer
    pagination_class = LimitOffsetPagination

    def get_queryset(self):
        return graph_list(tenant=self.tenant)

    @extend_schema(responses=with_errors({200: GraphSerializer(many=True)}, 400),
                   examples=[_example("A graph with two versions", EXAMPLE_GRAPH)],
                   summary="List graphs by name (paginated with limit and offset)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=GraphCreateSerializer, responses=with_errors({201: GraphSerializer}, 400, 409),
                   examples=[_example("A new graph", {"name": "digits-pipeline", "description": "Cast, classify"},
                                      request=True),
                             _example("Created", {**EXAMPLE_GRAPH, "latest_version": None}, status_code=201)],
                   summary="Create a graph (empty until its first version is saved)")
    def post(self, request):
        payload = GraphCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        graph = graph_create(tenant=self.tenant, actor=self.actor, **payload.validated_data)
        return Response(GraphSerializer(graph_get(tenant=self.tenant, graph_id=graph.pk)).data,
                        status=status.HTTP_201_CREATED)


class GraphDetailView(TenantAPIView):
    @extend_schema(responses=with_errors({200: GraphSerializer}, 404), examples=[_example("A graph", EXAMPLE_GRAPH)],
                   summary="A graph")
    def get(self, request, graph_id: int):
        return Response(GraphSerializer(graph_get(tenant=self.tenant, graph_id=graph_id)).data)

    @extend_schema(request=GraphUpdateSerializer, responses=with_errors({200: GraphSerializer}, 400, 404, 409),
                   examples=[_example("Rename", {"name": "digits-v2"}, request=True),
                             _example("Renamed", {**EXAMPLE_GRAPH, "name": "digits-v2"})],
                   summary="Rename a graph or change its description")
    def patch(self, request, graph_id: int):
        payload = GraphUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        graph_update(tenant=self.tenant, graph_id=graph_id, **payload.validated_data)
        return Response(GraphSerializer(graph_get(tenant=self.tenant, graph_id=graph_id)).data)

    @extend_schema(responses=with_errors({204: None}, 404), summary="Delete a graph and all its versions")
    def delete(self, request, graph_id: int):
        graph_delete(tenant=self.tenant, graph_id=graph_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class GraphVersionListView(TenantAPIView):
    @extend_schema(responses=with_errors({200: GraphVersionSummarySerializer(many=True)}, 404),
                   examples=[_example("Version 2", {key: EXAMPLE_VERSION[key]
                                                    for key in GraphVersionSummarySerializer.Meta.fields})],
                   summary="Versions of a graph, newest first (without their specs)")
    def get(self, request, graph_id: int):
        versions = graph_version_list(tenant=self.tenant, graph_id=graph_id)
        return Response(GraphVersionSummarySerializer(versions, many=True).data)

    @extend_schema(
        request=GraphVersionCreateSerializer,
        responses=_with_graph_errors({201: GraphVersionSerializer}, 404),
        examples=[_example("Cast, then classify", {"spec": EXAMPLE_SPEC, "message": "Cast before the classifier"},
                           request=True),
                  _example("Saved as version 2", EXAMPLE_VERSION, status_code=201), INVALID_GRAPH_EXAMPLE],
        summary="Save a spec as the graph's next version (validated first)",
        description="The spec is validated as POST /api/v1/graphs/validate does. When it is invalid the answer is a "
                    "400 with code invalid_graph and every issue under error.errors, and nothing is saved. Versions "
                    "are numbered 1, 2, ... per graph and never change.",
    )
    def post(self, request, graph_id: int):
        payload = GraphVersionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        version = graph_version_create(tenant=self.tenant, graph_id=graph_id, actor=self.actor,
                                       **payload.validated_data)
        return Response(GraphVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class GraphVersionDetailView(TenantAPIView):
    @extend_schema(responses=with_errors({200: GraphVersionSerializer}, 404),
                   examples=[_example("Version 2", EXAMPLE_VERSION)], summary="One version of a graph, with its spec")
    def get(self, request, graph_id: int, number: int):
        return Response(GraphVersionSerializer(graph_version_get(tenant=self.tenant, graph_id=graph_id,
                                                                 number=number)).data)


class GraphValidateView(TenantAPIView):
    permission_classes = (MayValidate,)

    @extend_schema(
        request=GraphValidateSerializer,
        responses=with_errors({200: GraphCheckSerializer}, 400),
        examples=[_example("Cast, then classify", {"spec": EXAMPLE_SPEC}, request=True),
                  _example("Valid", {"valid": True, "errors": [], "ports": EXAMPLE_PORTS, "inputs": EXAMPLE_INPUTS,
                                     "outputs": EXAMPLE_OUTPUTS}),
                  _example("Invalid", {"valid": False, "errors": [EXAMPLE_ISSUE],
                                       "ports": {port: EXAMPLE_PORTS[port] for port in ("in.image", "clf.X")},
                                       "inputs": EXAMPLE_INPUTS, "outputs": EXAMPLE_OUTPUTS})],
        summary="Check a spec without saving it",
        description="Answers 200 for any spec, valid or not: the problems are in errors, each naming its node, port "
                    "or edge. ports gives the type of every port the validator could work out (the editor colours "
                    "its handles with them). Every member may call it.",
    )
    def post(self, request):
        payload = GraphValidateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        check = graph_validate(tenant=self.tenant, spec=payload.validated_data["spec"])
        return Response({"valid": check.valid, "errors": [asdict(issue) for issue in check.errors],
                         "ports": check.ports, "inputs": check.inputs, "outputs": check.outputs})


class GraphOpsView(TenantAPIView):
    @extend_schema(responses=with_errors({200: OpSerializer(many=True)}),
                   examples=[_example("cast", {
                       "op": "cast", "kind": "op", "doc": "y = x converted to another datatype.", "inputs": ["x"],
                       "outputs": ["y"], "accepts": {"x": ["UINT8", "INT64", "FP32"]},
                       "params": {"to": {"type": "string", "required": True, "default": None,
                                         "help": "the datatype of y", "choices": ["UINT8", "INT64", "FP32"]}}})],
                   summary="The built-in ops an op node can use (the editor's palette)")
    def get(self, request):
        return Response(op_catalogue())
