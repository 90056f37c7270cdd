"""Seed the demo: tenant, owner login, the digits model deployed, a fallback classifier, the
demo graph (digits-pipeline) built from both, and a key with both scopes.

Idempotent. The key's secret is never stored in the database, so the demo keeps its raw
key in var/demo.json (mode 0600) and reuses it while that key exists and is not revoked."""
import json
import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from gateway.contract.hashing import hash_api_key
from graph_editor.models import Graph, MLModel
from graph_editor.samples import (
    digits_classifier_onnx,
    digits_dataset,
    digits_fallback_classifier_onnx,
    digits_pipeline_spec,
)
from graph_editor.services import model_version_upload
from graph_editor.services_graphs import graph_create, graph_version_create
from tenants.models import ApiKey, Role, Tenant
from tenants.services import api_key_create, membership_add, tenant_create, user_create
from workers.models import Deployment, DeploymentState
from workers.services import deployment_create, deployment_retry

DEMO_SLUG = "demo"
DEMO_USER = "demo"
MODEL_NAME = "digits"
FALLBACK_NAME = "digits-forest"
GRAPH_NAME = "digits-pipeline"


class Command(BaseCommand):
    help = "Create (or find) the demo tenant, login, deployed model and API key."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print one JSON object and nothing else")

    def handle(self, *args, as_json: bool = False, **options):
        password = os.environ.get("DEMO_PASSWORD", "demo-password")
        with transaction.atomic():
            tenant = Tenant.objects.filter(slug=DEMO_SLUG).first() or tenant_create(name="Demo", slug=DEMO_SLUG)
            User = get_user_model()
            user = User.objects.filter(username=DEMO_USER).first()
            if user is None:
                user = user_create(username=DEMO_USER, password=password, email="demo@example.com")
            elif not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
            membership_add(tenant=tenant, user=user, role=Role.OWNER)

        version = self._model(tenant, user, MODEL_NAME, digits_classifier_onnx,
                              "Handwritten digits (8x8) classifier: scikit-learn logistic regression")
        fallback = self._model(tenant, user, FALLBACK_NAME, digits_fallback_classifier_onnx,
                               "Handwritten digits (8x8) classifier: scikit-learn random forest, the fallback")
        graph = self._graph(tenant, user, classifier=version, fallback=fallback)
        deployment = self._deployed(tenant, user, MODEL_NAME, model_version_id=version.pk)
        graph_deployment = self._deployed(tenant, user, GRAPH_NAME,
                                          graph_version_id=graph.versions.order_by("-number").first().pk)

        raw_key = self._demo_key(tenant, user)
        summary = {
            "portal_url": settings.PORTAL_URL,
            "gateway_url": settings.GATEWAY_URL,
            "triton_url": os.environ.get("TRITON_URL",
                                         f"http://127.0.0.1:{os.environ.get('TRITON_HTTP_PORT', '8100')}"),
            "username": DEMO_USER,
            "password": password,
            "api_key": raw_key,
            "model": deployment.name,
            "graph": graph_deployment.name,
            "graph_id": graph.pk,
        }
        if as_json:
            self.stdout.write(json.dumps(summary))
            return
        self.stdout.write(self._banner(summary, deployment.state))

    def _deployed(self, tenant, user, name: str, **target) -> Deployment:
        """The deployment of that name (created, or retried if it failed)."""
        deployment = (
            Deployment.objects.for_tenant(tenant).filter(name=name).exclude(state=DeploymentState.UNDEPLOYED).first()
        )
        if deployment is None:
            deployment = deployment_create(tenant=tenant, name=name, actor=user, **target)
        elif deployment.state == DeploymentState.FAILED:
            deployment = deployment_retry(tenant=tenant, deployment_id=deployment.pk)
        return deployment

    def _model(self, tenant, user, name: str, build, description: str):
        """The model's newest version, uploaded first if the model has none."""
        model = MLModel.objects.for_tenant(tenant).filter(name=name).first()
        version = model.versions.order_by("-version").first() if model else None
        if version is None:
            version = model_version_upload(tenant=tenant, model_name=name, chunks=[build()],
                                           filename=f"{name}.onnx", description=description, actor=user)
        return version

    def _graph(self, tenant, user, *, classifier, fallback) -> Graph:
        """The demo graph, with a first version, unless the tenant already has it."""
        graph = Graph.objects.for_tenant(tenant).filter(name=GRAPH_NAME).first()
        if graph is None:
            graph = graph_create(tenant=tenant, name=GRAPH_NAME, actor=user,
                                 description="Digits with a fallback: the random forest answers when the "
                                             "classifier's top score is below 0.9")
        if not graph.versions.exists():
            graph_version_create(tenant=tenant, graph_id=graph.pk, actor=user, message="The demo graph",
                                 spec=digits_pipeline_spec(classifier=classifier.pk, fallback=fallback.pk))
        return graph

    def _demo_key(self, tenant, user) -> str:
        path = Path(settings.VAR_DIR) / "demo.json"
        if path.exists():
            raw = json.loads(path.read_text()).get("api_key", "")
            if ApiKey.objects.for_tenant(tenant).filter(secret_hash=hash_api_key(raw), revoked_at=None).exists():
                return raw
        _, raw = api_key_create(tenant=tenant, label="demo key", scopes=["infer", "manage"], actor=user)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps({"api_key": raw}))
        return raw

    def _banner(self, s: dict, state: str) -> str:
        # The first image of scikit-learn's digits data: a handwritten 0.
        pixels = ",".join(str(int(v)) for v in digits_dataset()[0][0])
        gateway_host = s["gateway_url"].split("://", 1)[-1].rstrip("/")
        if state != DeploymentState.READY:
            state = f"{state}; the worker loads it when it runs"
        return f"""
  Inference platform demo
  -----------------------
  Portal    {s['portal_url']}   (login: {s['username']} / {s['password']})
  API docs  {s['portal_url']}/api/v1/docs/      Admin {s['portal_url']}/admin/
  Gateway   {s['gateway_url']}   (KServe v2, Authorization: Bearer <API key>)
  Triton    {s['triton_url']}
  Model     {s['model']}   (deployment: {state})
  Graph     {s['graph']}   (digits with a fallback classifier; edit it at {s['portal_url']}/graphs/{s['graph_id']}/)
  API key   {s['api_key']}

  Call it with curl (the pixels of a handwritten 0):
    curl -s {s['gateway_url']}/v2/models/{s['model']}/infer \\
      -H "Authorization: Bearer {s['api_key']}" -H "Content-Type: application/json" \\
      -d '{{"inputs":[{{"name":"X","shape":[1,64],"datatype":"FP32","data":[{pixels}]}}]}}'

  Call the graph (the same image as 8x8 UINT8; out come label, name and score):
    curl -s {s['gateway_url']}/v2/models/{s['graph']}/infer \\
      -H "Authorization: Bearer {s['api_key']}" -H "Content-Type: application/json" \\
      -d '{{"inputs":[{{"name":"image","shape":[1,8,8],"datatype":"UINT8","data":[{pixels}]}}]}}'

  Or from Python with tritonclient (in .venv):
    import numpy as np, tritonclient.http as httpclient
    client = httpclient.InferenceServerClient("{gateway_host}")
    x = httpclient.InferInput("X", [1, 64], "FP32")
    x.set_data_from_numpy(np.array([[{pixels}]], dtype=np.float32))
    result = client.infer("{s['model']}", [x], headers={{"Authorization": "Bearer {s['api_key']}"}})
    print(result.as_numpy("label"), result.as_numpy("probabilities"))

  Print this again: .venv/bin/python manage.py seed_demo   (or --json)
"""
