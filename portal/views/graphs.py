"""The Graphs pages: the tenant's graphs (list, create) and the editor of one graph.

The editor itself is the frontend bundle (frontend/src/graph), which reads and writes
through the REST API; this page tells it which graph and whether the user may edit."""
from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render

from gateway.contract.errors import PlatformError
from graph_editor.selectors import graph_get, graph_list
from graph_editor.services_graphs import graph_create
from portal.views.access import tenant_page


class GraphCreateForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Lowercase letters, digits and hyphens, unique in this tenant.",
                           widget=forms.TextInput(attrs={"placeholder": "digits-pipeline", "autocomplete": "off"}))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={
        "rows": 2, "placeholder": "What the graph does, for your team"}))


@tenant_page
def graphs(request):
    form = GraphCreateForm()
    if request.method == "POST":
        form = GraphCreateForm(request.POST)
        if form.is_valid():
            try:
                graph = graph_create(tenant=request.tenant, name=form.cleaned_data["name"],
                                     description=form.cleaned_data["description"], actor=request.user)
            except PlatformError as exc:
                form.add_error("name", exc.message)
            else:
                messages.success(request, f"Created graph {graph.name}. Build it here, then save it as version 1.")
                return redirect("graph-editor", graph_id=graph.pk)
    return render(request, "portal/graphs.html", {"graphs": graph_list(tenant=request.tenant), "form": form},
                  status=400 if form.errors else 200)


@tenant_page
def editor(request, graph_id: int):
    graph = graph_get(tenant=request.tenant, graph_id=graph_id)
    return render(request, "portal/graphs_editor.html", {"graph": graph, "can_edit": request.membership.can_manage})
