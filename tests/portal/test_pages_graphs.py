"""The Graphs pages: the list and its create form, and the editor page that hands one graph
to the frontend bundle, with tenancy and roles on each."""
import re

import pytest

from graph_editor.models import Graph, GraphVersion
from graph_editor.services_graphs import graph_create
from tests.portal.test_pages import table_rows

pytestmark = pytest.mark.django_db


def editor_mount(page: str) -> dict:
    """The data attributes the editor bundle reads from its mount point."""
    tag = page.split("data-graph-editor", 1)[1].split(">", 1)[0]
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag))


@pytest.fixture
def pipeline(acme, alice):
    graph = graph_create(tenant=acme, name="digits-pipeline", description="Cast, classify, top-1", actor=alice)
    GraphVersion.unscoped.create(tenant=acme, graph=graph, number=1, spec={"nodes": [], "edges": []}, message="first",
                                 author=alice)
    return graph


@pytest.fixture
def globex_graph(globex):
    return graph_create(tenant=globex, name="globex-secret")


@pytest.mark.parametrize("path", ["/graphs/", "/graphs/1/"])
def test_anonymous_users_are_sent_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_the_list_shows_this_tenants_graphs_with_their_latest_version(client, alice, pipeline, globex_graph):
    graph_create(tenant=pipeline.tenant, name="empty-one")
    client.force_login(alice)
    page = client.get("/graphs/").content.decode()
    rows = table_rows(page, "graphs")
    assert [row[:2] for row in rows[1:]] == [["digits-pipeline Cast, classify, top-1", "v1"],
                                             ["empty-one", "not saved yet"]]
    assert f'href="/graphs/{pipeline.pk}/"' in page
    assert "globex-secret" not in page
    assert 'id="graph-create-form"' in page
    assert '<a href="/graphs/" class="active" aria-current="page">' in page


def test_an_owner_creates_a_graph_and_lands_in_its_editor(client, alice, acme):
    client.force_login(alice)
    response = client.post("/graphs/", {"name": "fallback", "description": "with a forest"}, follow=True)
    graph = Graph.objects.for_tenant(acme).get()
    assert response.redirect_chain[-1][0] == f"/graphs/{graph.pk}/"
    assert (graph.name, graph.description, graph.created_by) == ("fallback", "with a forest", alice)
    assert "Created graph fallback." in response.content.decode()


@pytest.mark.parametrize("name, message", [
    ("digits-pipeline", "A graph named &#x27;digits-pipeline&#x27; already exists"),
    ("Not A Slug", "Invalid graph name"),
])
def test_a_refused_name_says_why_and_creates_nothing(client, alice, pipeline, name, message):
    client.force_login(alice)
    response = client.post("/graphs/", {"name": name})
    assert response.status_code == 400
    error = response.content.decode().split('data-field-error="name">')[1].split("</div>")[0]
    assert message in error
    assert list(Graph.objects.for_tenant(pipeline.tenant).values_list("name", flat=True)) == ["digits-pipeline"]


def test_the_editor_page_hands_the_graph_to_the_bundle(client, alice, pipeline):
    client.force_login(alice)
    page = client.get(f"/graphs/{pipeline.pk}/").content.decode()
    mount = editor_mount(page)
    assert mount["graph-id"] == str(pipeline.pk)
    assert mount["graph-name"] == "digits-pipeline"
    assert mount["can-edit"] == "true"
    assert mount["api-root"] == "/api/v1"
    assert len(mount["csrf-token"]) >= 32
    assert "Cast, classify, top-1" in page
    assert "data-read-only-note" not in page


def test_a_member_sees_the_editor_read_only_and_cannot_create(client, carol, pipeline):
    client.force_login(carol)
    page = client.get(f"/graphs/{pipeline.pk}/").content.decode()
    assert editor_mount(page)["can-edit"] == "false"
    assert "read-only: your role is member" in page
    listing = client.get("/graphs/").content.decode()
    assert 'id="graph-create-form"' not in listing
    assert "Your role is read-only" in listing
    assert client.post("/graphs/", {"name": "sneaky"}).status_code == 403
    assert not Graph.objects.for_tenant(pipeline.tenant).filter(name="sneaky").exists()


def test_another_tenants_graph_is_not_found(client, alice, globex_graph):
    client.force_login(alice)
    assert client.get(f"/graphs/{globex_graph.pk}/").status_code == 404
    assert client.get("/graphs/999999/").status_code == 404


def test_without_the_bundle_the_editor_page_says_how_to_build_it(client, alice, pipeline, monkeypatch):
    from portal import context_processors

    monkeypatch.setattr(context_processors.finders, "find", lambda path: None)
    client.force_login(alice)
    page = client.get(f"/graphs/{pipeline.pk}/").content.decode()
    assert "The editor is not built" in page
