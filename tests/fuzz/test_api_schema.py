"""Schemathesis against the platform's own OpenAPI schema, driving the Django app in-process
through WSGI: as acme's owner (a `manage` key) over the tenant endpoints and as platform
staff (a signed-in session) over the admin endpoints, with a model, a version,
deployments, a key and a quota seeded in acme and in globex.

Every response must have a documented status, content type and body, and never be a
500; a request that breaks the schema must be refused (negative_data_rejection), and
one without credentials too (ignored_auth). Generated path ids are steered, in about
equal parts, to acme's objects, to globex's or left as generated: globex's must answer
as an id that exists nowhere does (404, or the same 400 for a bad body), and globex's
objects must stay as they were.

The budget is the Hypothesis profile's max_examples per operation (tests/fuzz/conftest.py);
the coverage phase adds its boundary cases on top."""
import json
import re
import secrets
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import schemathesis
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client, override_settings
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import media_types
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from billing.models import Invoice, InvoiceLine
from graph_editor.models import MLModel, ModelVersion
from graph_editor.samples import digits_classifier_onnx
from graph_editor.services import model_version_upload
from tenants.models import ApiKey, Plan, Quota, Role
from tenants.quotas import quota_set
from tenants.services import api_key_create, membership_add, tenant_create, user_create
from workers.models import Deployment, DeploymentState
from workers.services import deployment_create

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection, ignored_auth]
# Path parameter -> the seeded object it names.
PATH_IDS = {"model_id": "model", "version_id": "version", "deployment_id": "deployment", "key_id": "key",
            "plan_id": "plan", "quota_id": "quota", "tenant_id": "tenant", "invoice_id": "invoice",
            "line_id": "line"}
TENANT_OWNED = {"model", "version", "deployment", "key", "invoice", "line"}
MISSING_ID = 2**31 - 1


def _config() -> schemathesis.Config:
    profile = hypothesis_settings.default
    # The tests send the credentials; generated Authorization headers and cookies would replace them.
    config = {"generation": {"max-examples": profile.max_examples, "mode": "all", "with-security-parameters": False},
              # The coverage phase's boundary cases number in the hundreds for a large body: the long campaign's.
              "phases": {"coverage": {"enabled": hypothesis_settings.get_current_profile_name() == "fuzz"}}}
    if profile.derandomize:
        config["seed"] = 0
    return schemathesis.Config.from_dict(config)


def _load_schema() -> schemathesis.BaseSchema:
    """The schema /api/v1/schema/ serves, generated here because collection has no database
    to sign in with (test_the_fuzzed_schema_is_the_served_one keeps the two equal)."""
    from drf_spectacular.generators import SchemaGenerator

    from portal.wsgi import application

    raw = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), cls=DjangoJSONEncoder))
    schema = schemathesis.openapi.from_dict(raw, config=_config())
    schema.app = application
    return schema


schema = _load_schema()


@schema.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure but one, which is the fuzzer's and not the API's: a form or
    multipart body carries every field as text, so a string field negated to another type
    ("was string, became object") reaches the server as a valid string; schemathesis's own
    allowance for form bodies misses it when the text happens to spell JSON."""
    form = media_types.is_form_urlencoded(case.media_type) or media_types.is_multipart(case.media_type)
    if not isinstance(failure, AcceptedNegativeData) or not form:
        return True
    was = re.findall(r"\(was (\w+), became \w+\)", failure.message)
    return not was or any(kind != "string" for kind in was)


tenant_schema = schema.exclude(path_regex="^/api/v1/admin/")
staff_schema = schema.include(path_regex="^/api/v1/admin/")


# ---- seeded data ------------------------------------------------------------------------

def _seed_tenant(tenant, owner_name: str) -> dict:
    owner = user_create(username=owner_name, password=f"{owner_name}-password-1")
    membership_add(tenant=tenant, user=owner, role=Role.OWNER)
    version = model_version_upload(tenant=tenant, model_name="digits", chunks=[digits_classifier_onnx()])
    # Pending for good: its load task is queued on commit, and nothing here commits.
    deployment = deployment_create(tenant=tenant, model_version_id=version.pk, name="digits")
    ready = deployment_create(tenant=tenant, model_version_id=version.pk, name="digits-ready")
    Deployment.unscoped.filter(pk=ready.pk).update(state=DeploymentState.READY)
    target_key, _ = api_key_create(tenant=tenant, label="fuzz target", scopes=["infer"])
    quota = quota_set(level="deployment", target=deployment, values={"rate_per_second": 10.0})
    invoice = Invoice.unscoped.create(tenant=tenant, period_start=date(2026, 1, 1), period_end=date(2026, 2, 1),
                                      total=Decimal("1.00"))
    line = InvoiceLine.objects.create(invoice=invoice, kind="usage", component="requests",
                                      deployment_id=deployment.pk, deployment_name=deployment.name,
                                      service_start=datetime(2026, 1, 1, tzinfo=UTC),
                                      service_end=datetime(2026, 2, 1, tzinfo=UTC), description="Requests",
                                      quantity=Decimal("2.5"), unit="1,000 requests", amount=Decimal("1.00"))
    return {"model": version.model_id, "version": version.pk, "deployment": deployment.pk, "key": target_key.pk,
            "quota": quota.pk, "tenant": tenant.pk, "invoice": invoice.pk, "line": line.pk, "owner": owner}


def _snapshot(tenant) -> dict:
    """What another tenant must never change."""
    return {
        "models": list(MLModel.unscoped.filter(tenant=tenant).order_by("pk").values()),
        "versions": list(ModelVersion.unscoped.filter(tenant=tenant).order_by("pk").values()),
        "deployments": list(Deployment.unscoped.filter(tenant=tenant).order_by("pk").values()),
        "keys": list(ApiKey.unscoped.filter(tenant=tenant).order_by("pk").values("pk", "revoked_at", "scopes")),
        "quotas": list(Quota.objects.filter(tenant=tenant).order_by("pk").values()),
        "invoices": list(Invoice.unscoped.filter(tenant=tenant).order_by("pk").values()),
        "lines": list(InvoiceLine.objects.filter(invoice__tenant=tenant).order_by("pk").values()),
    }


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker, tmp_path_factory):
    """Seeded once for the module, in a transaction that each test's own nests in (as
    Django's setUpTestData does), so every operation starts from the same state."""
    from workers import queue

    storage = tmp_path_factory.mktemp("models")
    fast_hashing = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with django_db_blocker.unblock(), override_settings(MODEL_STORAGE_DIR=storage, PASSWORD_HASHERS=fast_hashing), \
            pytest.MonkeyPatch.context() as patch:
        # Unloading a ready deployment enqueues at once, not on commit: keep it off the broker.
        patch.setattr(queue, "deployment_scale_down", lambda *args, **kwargs: None)
        outer = transaction.atomic()
        outer.__enter__()
        try:
            acme = tenant_create(name="Acme Corp", slug="acme")
            globex = tenant_create(name="Globex", slug="globex")
            ids = {"acme": _seed_tenant(acme, "alice"), "globex": _seed_tenant(globex, "bob")}
            ids["acme"]["plan"] = ids["globex"]["plan"] = Plan.objects.order_by("pk").first().pk
            auth_key, secret = api_key_create(tenant=acme, label="fuzzer", scopes=["manage"])
            staff = user_create(username="root", password="root-password-1")
            staff.is_staff = True
            staff.save(update_fields=["is_staff"])
            yield {"globex": globex, "ids": ids, "auth_key": auth_key.pk, "secret": secret, "staff": staff,
                   "globex_before": _snapshot(globex), "storage": storage}
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def storage(seeded, settings):
    settings.MODEL_STORAGE_DIR = seeded["storage"]


@pytest.fixture(autouse=True)
def wsgi_in_test_transaction():
    """Django's WSGI handler closes the database connection after each request, which would
    end the test's transaction; Django's own test client disconnects the same receiver."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _steer(case, ids: dict) -> bool:
    """Point the case's path ids at acme's objects, at globex's, or leave them as generated,
    in about equal parts (by the first generated id, so that a failure replays and shrinks);
    True when they are globex's."""
    params = case.path_parameters
    if not params or case.meta.is_negative_at(ParameterLocation.PATH):
        return False
    try:
        tenant = (None, "acme", "globex")[int(str(next(iter(params.values())))) % 3]
    except ValueError:
        return False
    if tenant is None:
        return False
    case.path_parameters = {name: ids[tenant][PATH_IDS[name]] if name in PATH_IDS else value
                            for name, value in params.items()}
    return tenant == "globex" and any(PATH_IDS.get(name) in TENANT_OWNED for name in params)


# ---- the campaigns ----------------------------------------------------------------------

def test_the_fuzzed_schema_is_the_served_one(seeded):
    client = Client()
    client.force_login(seeded["ids"]["acme"]["owner"])
    served = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert served == schema.raw_schema


@tenant_schema.parametrize()
def test_tenant_api_conforms_to_its_schema(case, seeded):
    foreign = _steer(case, seeded["ids"])
    if (case.path_parameters or {}).get("key_id") == seeded["auth_key"]:
        case.path_parameters = {**case.path_parameters, "key_id": seeded["ids"]["acme"]["key"]}  # not its own key
    headers = {"Authorization": f"Bearer {seeded['secret']}"}
    response = case.call_and_validate(headers=headers, checks=CHECKS)
    assert _snapshot(seeded["globex"]) == seeded["globex_before"]
    if foreign:
        # Indistinguishable from an id that exists nowhere (a bad body is a 400 either way).
        case.path_parameters = {name: MISSING_ID for name in case.path_parameters}
        missing = case.call(headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == \
            (missing.status_code, missing.json()["error"]["code"]), (case.method, case.formatted_path, response.text)


@pytest.fixture
def staff_headers(seeded) -> dict:
    """A staff session, and the CSRF cookie and header that unsafe methods need with one."""
    client = Client()
    client.force_login(seeded["staff"])
    csrf = secrets.token_hex(16)
    return {"Cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}", "X-CSRFToken": csrf}


@staff_schema.parametrize()
def test_staff_api_conforms_to_its_schema(case, seeded, staff_headers):
    _steer(case, seeded["ids"])
    case.call_and_validate(headers=staff_headers, checks=CHECKS)
