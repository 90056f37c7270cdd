"""Seed the demo: tenant, owner login, the digits model deployed, a fallback classifier, the
demo graph (digits-pipeline) built from both, a key with both scopes, and billing: prices
on the demo's plan, a spend limit, and this month's usage so far, rated into a live draft.

Idempotent. The key's secret is never stored in the database, so the demo keeps its raw
key in var/demo.json (mode 0600) and reuses it while that key exists and is not revoked.
Prices are added only when the plan has none in force, the spend limit only when none is
set, and usage only when the demo has none this month (with request ids derived from the
month, so that even a race adds nothing twice)."""
import json
import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from billing.invoicing import billing_account_for, invoice_draft_refresh, month_start
from billing.models import Component, Price, PriceVersion, UsageEvent
from billing.pricing import version_in_force
from billing.rollups import hour_start, usage_rollup_hour
from billing.spend import spend_limit_set
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
from tenants.quotas import tenant_plan
from tenants.services import api_key_create, membership_add, tenant_create, user_create
from workers.models import Deployment, DeploymentState
from workers.services import deployment_create, deployment_retry

DEMO_SLUG = "demo"
DEMO_USER = "demo"
MODEL_NAME = "digits"
FALLBACK_NAME = "digits-forest"
GRAPH_NAME = "digits-pipeline"

# The demo's prices (in USD), from the start of the month the demo is first seeded in: a base
# fee, and for each component a free allowance and two graduated tiers.
DEMO_BASE_FEE = Decimal("10.00")
DEMO_PRICES = {
    Component.REQUESTS: ("1", [{"up_to": "100", "unit_price": "0.50"}, {"up_to": None, "unit_price": "0.40"}]),
    Component.COMPUTE_CPU: ("60", [{"up_to": "3600", "unit_price": "0.010"}, {"up_to": None, "unit_price": "0.008"}]),
    Component.COMPUTE_GPU: ("60", [{"up_to": "3600", "unit_price": "0.050"}, {"up_to": None, "unit_price": "0.040"}]),
    Component.RESERVED_MEMORY: ("10", [{"up_to": "720", "unit_price": "0.020"},
                                       {"up_to": None, "unit_price": "0.015"}]),
}
DEMO_SPEND_LIMIT = Decimal("100.00")
# Requests a day of each demo deployment (about; weekends half), and their compute time (ms).
DEMO_TRAFFIC = {MODEL_NAME: (220, (20.0, 90.0)), GRAPH_NAME: (130, (120.0, 420.0))}
# The demo's calls are spread over these UTC hours of each day (fewer hours to roll up).
DEMO_HOURS = (8, 9, 11, 13, 14, 16, 18, 21)


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
        draft = self._billing(tenant, user, [deployment, graph_deployment])
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
            "billing": {"draft_total": str(draft.total), "currency": draft.currency.upper()},
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

    def _billing(self, tenant, user, deployments: list[Deployment]):
        """Prices, a spend limit and this month's usage, rated into the live draft invoice."""
        now = timezone.now()
        period_start = month_start(now)
        month = datetime(period_start.year, period_start.month, 1, tzinfo=UTC)
        plan = tenant_plan(tenant)
        if plan is not None:
            with transaction.atomic():
                versions = list(PriceVersion.objects.filter(plan=plan).order_by("effective_from"))
                if version_in_force(versions, now) is None:
                    version = PriceVersion.objects.create(plan=plan, effective_from=month, currency="usd",
                                                          base_fee=DEMO_BASE_FEE, created_by=user,
                                                          note="The demo's prices (manage.py seed_demo)")
                    Price.objects.bulk_create([
                        Price(version=version, component=component, free_allowance=Decimal(allowance), tiers=tiers)
                        for component, (allowance, tiers) in DEMO_PRICES.items()])
        if billing_account_for(tenant=tenant).spend_limit is None:
            spend_limit_set(tenant=tenant, amount=DEMO_SPEND_LIMIT, enforcement="hard", actor=user)
        if not UsageEvent.objects.for_tenant(tenant).filter(occurred_at__gte=month).exists():
            events = self._demo_usage(tenant, deployments, month=month, now=now)
            UsageEvent.unscoped.bulk_create(events, batch_size=2000, ignore_conflicts=True)
            for hour in sorted({hour_start(event.occurred_at) for event in events}):
                usage_rollup_hour(hour=hour)
        return invoice_draft_refresh(tenant=tenant, period_start=period_start, now=now)

    def _demo_usage(self, tenant, deployments: list[Deployment], *, month: datetime,
                    now: datetime) -> list[UsageEvent]:
        """Calls to the demo deployments from the start of the month until now: the same ones
        for the same month (seeded by it), a few of them refused (not billed)."""
        rng = random.Random(f"{tenant.slug}-{month:%Y-%m}")
        events = []
        day = month
        while day < now:
            hours = [day + timedelta(hours=h) for h in DEMO_HOURS if day + timedelta(hours=h) < now]
            if not hours:  # early on the first day of a month: the time so far
                hours = [hour_start(now)]
            weekend = 0.5 if day.weekday() >= 5 else 1.0
            for deployment in deployments:
                per_day, (fastest, slowest) = DEMO_TRAFFIC[deployment.name]
                for _ in range(int(per_day * weekend * rng.uniform(0.6, 1.4))):
                    hour = rng.choice(hours)
                    occurred_at = min(hour + timedelta(seconds=rng.uniform(0, 3600)), now - timedelta(seconds=1))
                    ok = rng.random() > 0.03
                    compute_ms = round(rng.uniform(fastest, slowest), 3) if ok else 0.0
                    events.append(UsageEvent(
                        tenant=tenant, request_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                        deployment=deployment, deployment_name=deployment.name, endpoint="infer",
                        model_version_id=deployment.model_version_id,
                        status=200 if ok else rng.choice((400, 429)), latency_ms=compute_ms + rng.uniform(1.0, 6.0),
                        upstream_ms=compute_ms + 0.5 if ok else None, compute_ms=compute_ms,
                        bytes_in=rng.randint(300, 700), bytes_out=rng.randint(80, 400) if ok else 120,
                        occurred_at=occurred_at))
            day += timedelta(days=1)
        return events

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
        bill = s["billing"]
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
  Billing   {s['portal_url']}/billing/   (this month's draft so far: {bill['draft_total']} {bill['currency']})

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
