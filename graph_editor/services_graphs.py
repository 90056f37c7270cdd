"""Graph writes: create, rename, delete a graph, and save a spec as its next version.

A version is saved only when the validator (graph_editor/graphs/validate.py) finds the spec
valid; its signature is stored with it. Each change is recorded in the audit log in the
transaction that makes it."""
from dataclasses import asdict

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from gateway.contract.errors import Conflict, NotFound, PlatformError, validation_message
from graph_editor.graphs.validate import GraphIssue, graph_validate
from graph_editor.models import Graph, GraphVersion
from graph_editor.signals import graph_deleting
from tenants.audit import audit_record
from tenants.models import Tenant, slug_name_clean


class InvalidGraph(PlatformError):
    """A spec the validator refused. The REST API renders every issue under `error.errors`;
    the message is the first one's."""

    code = "invalid_graph"

    def __init__(self, issues: list[GraphIssue]):
        super().__init__(issues[0].message if issues else "The graph is invalid.")
        self.issues = issues

    def as_dict(self) -> dict:
        body = super().as_dict()
        body["error"]["errors"] = [asdict(issue) for issue in self.issues]
        return body


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A graph named '{name}' already exists in this tenant; choose another name.")


def _locked_graph(tenant: Tenant, graph_id: int) -> Graph:
    graph = Graph.objects.for_tenant(tenant).select_for_update().filter(pk=graph_id).first()
    if graph is None:
        raise NotFound("No such graph in this tenant.")
    return graph


def _saved(row, *, name: str, **save_kwargs) -> None:
    """full_clean, then save in a savepoint: a name taken by a concurrent request (the unique
    constraint) is a Conflict, and the caller's transaction stays usable."""
    try:
        row.full_clean(validate_constraints=False)
    except ValidationError as exc:
        raise PlatformError(validation_message(exc)) from None
    try:
        with transaction.atomic():
            row.save(**save_kwargs)
    except IntegrityError:
        raise _name_taken(name) from None


def graph_create(*, tenant: Tenant, name: str, description: str = "", actor=None) -> Graph:
    """Create an empty graph (no version yet) under a name unique in the tenant."""
    name = slug_name_clean(name, what="graph")
    with transaction.atomic():
        if Graph.objects.for_tenant(tenant).filter(name=name).exists():
            raise _name_taken(name)
        graph = Graph(tenant=tenant, name=name, description=description or "", created_by=actor)
        _saved(graph, name=name)
        audit_record(event_type="graph.created", target=graph, new={"name": name, "description": graph.description})
    return graph


def graph_update(*, tenant: Tenant, graph_id: int, name: str | None = None, description: str | None = None) -> Graph:
    """Rename a graph and/or change its description; None leaves a field as it is."""
    if name is not None:
        name = slug_name_clean(name, what="graph")
    with transaction.atomic():
        graph = _locked_graph(tenant, graph_id)
        before = {"name": graph.name, "description": graph.description}
        after = {"name": graph.name if name is None else name,
                 "description": graph.description if description is None else description}
        if after == before:
            return graph
        if after["name"] != before["name"] and (
                Graph.objects.for_tenant(tenant).filter(name=after["name"]).exclude(pk=graph.pk).exists()):
            raise _name_taken(after["name"])
        graph.name, graph.description = after["name"], after["description"]
        _saved(graph, name=graph.name, update_fields=["name", "description", "updated_at"])
        audit_record(event_type="graph.changed", target=graph, old=before, new=after)
    return graph


def graph_delete(*, tenant: Tenant, graph_id: int) -> None:
    """Delete a graph and all its versions."""
    with transaction.atomic():
        graph = _locked_graph(tenant, graph_id)
        versions = GraphVersion.objects.for_tenant(tenant).filter(graph=graph).count()
        # The deployments layer refuses (Conflict) while a version is deployed.
        graph_deleting.send(sender=Graph, graph=graph)
        audit_record(event_type="graph.deleted", target=graph, old={"name": graph.name, "versions": versions})
        graph.delete()


def graph_version_create(*, tenant: Tenant, graph_id: int, spec, message: str = "", actor=None) -> GraphVersion:
    """Validate `spec` and save it as the graph's next version, with the signature the
    validator found. An invalid spec raises InvalidGraph carrying every issue, and nothing
    is saved. The graph's row lock numbers concurrent saves 1, 2, ... without a gap or a
    repeat."""
    with transaction.atomic():
        graph = _locked_graph(tenant, graph_id)
        check = graph_validate(tenant=tenant, spec=spec)
        if not check.valid:
            raise InvalidGraph(check.errors)
        last = (GraphVersion.objects.for_tenant(tenant).filter(graph=graph).order_by("-number")
                .values_list("number", flat=True).first()) or 0
        version = GraphVersion(tenant=tenant, graph=graph, number=last + 1, spec=spec, message=message or "",
                               inputs=check.inputs, outputs=check.outputs, author=actor)
        try:
            version.full_clean(validate_constraints=False)
        except ValidationError as exc:
            raise PlatformError(validation_message(exc)) from None
        version.save()
        graph.save(update_fields=["updated_at"])
        audit_record(event_type="graph_version.created", target=version,
                     new={"graph": graph.pk, "number": version.number, "message": version.message})
    return version
