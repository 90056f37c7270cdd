"""Billing over the REST API, rated for real from usage events: the live draft, invoices
with their lines, PDF and CSV, the requests behind a line, the prices, and the spend
limit (owners only). Members read everything; another tenant gets 404 on every surface,
and nothing of acme's changes."""
import csv
import io
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connections
from pypdf import PdfReader
from rest_framework.test import APIClient

from billing.invoicing import billing_account_for, credit_note_create, invoice_draft_refresh, month_start
from billing.models import BillingAccount, CreditNote, Invoice, InvoiceLine, Price, PriceVersion, UsageEvent
from billing.rollups import hour_start, usage_rollup_hour
from tenants.models import AuditLog, Plan, Role
from tenants.services import membership_add, user_create
from tests.api_helpers import key_client, session_client
from tests.billing.invoice_builders import invoice_create

pytestmark = pytest.mark.django_db

REQUESTS = 2500


@pytest.fixture
def prices(db):
    """The default plan's prices, in force since two months ago, and a version to come."""
    from django.utils import timezone

    plan = Plan.objects.get(is_default=True)
    now = timezone.now()
    version = PriceVersion.objects.create(plan=plan, effective_from=now - timedelta(days=62), currency="usd",
                                          base_fee=Decimal("29.00"))
    Price.objects.create(version=version, component="requests", free_allowance=Decimal(1),
                         tiers=[{"up_to": "1", "unit_price": "0.40"}, {"up_to": None, "unit_price": "0.20"}])
    Price.objects.create(version=version, component="compute_cpu", free_allowance=Decimal(0),
                         tiers=[{"up_to": None, "unit_price": "0.0001"}])
    upcoming = PriceVersion.objects.create(plan=plan, effective_from=now + timedelta(days=40), currency="usd",
                                           base_fee=Decimal("39.00"), note="New year prices")
    Price.objects.create(version=upcoming, component="requests", free_allowance=Decimal(2),
                         tiers=[{"up_to": None, "unit_price": "0.30"}])
    return version, upcoming


@pytest.fixture
def draft(acme, prices):
    """acme's draft for this month: 2,500 requests of 100 ms each in the current hour, rated.
    Requests: 1 (thousand) free, 1 at 0.40, 0.5 at 0.20 = 0.50; compute: 250 s at 0.0001 =
    0.025, rounded half-up to 0.03; with the base fee of 29.00, 29.53."""
    from django.utils import timezone

    hour = hour_start(timezone.now())
    UsageEvent.unscoped.bulk_create(
        UsageEvent(tenant=acme, request_id=uuid.uuid4(), deployment_name="digits", status=200, latency_ms=3,
                   compute_ms=100, occurred_at=hour + timedelta(microseconds=i)) for i in range(REQUESTS))
    usage_rollup_hour(hour=hour)
    return invoice_draft_refresh(tenant=acme, period_start=month_start(timezone.now()))


@pytest.fixture
def finalized(acme):
    """A finalized invoice of an earlier month, with a credit note."""
    invoice = invoice_create(acme)
    Invoice.unscoped.filter(pk=invoice.pk).update(period_start="2026-01-01", period_end="2026-02-01")
    invoice.refresh_from_db()
    credit_note_create(invoice=invoice, amount=Decimal("6.77"), reason="Outage on the 12th")
    return invoice


@pytest.fixture
def dave(acme):
    """An admin (not an owner) of acme."""
    user = user_create(username="dave", password="dave-password-1")
    membership_add(tenant=acme, user=user, role=Role.ADMIN)
    return user


def line_of(invoice: Invoice, component: str) -> InvoiceLine:
    return invoice.lines.get(component=component)


# ---- the month so far ---------------------------------------------------------------------


def test_a_member_reads_the_live_draft_with_its_lines_and_money_as_strings(carol, draft):
    response = session_client(carol).get("/api/v1/billing/current")
    assert response.status_code == 200, response.json()
    body = response.json()
    invoice = body["invoice"]
    assert invoice["status"] == "draft" and invoice["number"] is None and invoice["id"] == draft.pk
    assert invoice["total"] == body["cost_so_far"] == "29.53"
    lines = {line["component"] or line["kind"]: line for line in invoice["lines"]}
    assert lines["base_fee"]["amount"] == "29.00"
    assert lines["requests"]["quantity"] == "2.5" and lines["requests"]["unit"] == "1,000 requests"
    assert lines["requests"]["unit_price"] is None and lines["requests"]["amount"] == "0.50"
    assert [(t["from"], t["to"], t["unit_price"]) for t in lines["requests"]["tiers"]] == [
        ("0", "1", "0.00"), ("1", "2", "0.40"), ("2", "2.5", "0.20")]
    assert lines["compute_cpu"]["quantity"] == "250" and lines["compute_cpu"]["unit_price"] == "0.0001"
    assert lines["compute_cpu"]["amount"] == "0.03"  # 0.025, half-up
    assert Decimal(body["forecast"]) >= Decimal("29.53")
    assert body["currency"] == "usd"
    assert sum(Decimal(d["amount"]) for d in body["daily"] if d["deployment_name"] == "digits") >= Decimal("0.52")
    assert body["spend"]["limit"] is None and body["spend"]["spent"] == "29.53"
    assert all(isinstance(v, str) for v in (invoice["total"], body["forecast"], lines["requests"]["amount"]))


def test_the_current_draft_follows_new_usage(acme, carol, draft):
    from django.utils import timezone

    hour = hour_start(timezone.now())
    UsageEvent.unscoped.bulk_create(
        UsageEvent(tenant=acme, request_id=uuid.uuid4(), deployment_name="digits", status=200, latency_ms=3,
                   compute_ms=100, occurred_at=hour + timedelta(seconds=1, microseconds=i)) for i in range(500))
    usage_rollup_hour(hour=hour)
    # The draft is re-rated when it is more than a minute old (at most a minute behind the usage).
    Invoice.unscoped.filter(pk=draft.pk).update(rated_at=timezone.now() - timedelta(minutes=2))
    body = session_client(carol).get("/api/v1/billing/current").json()
    requests = next(line for line in body["invoice"]["lines"] if line["component"] == "requests")
    assert requests["quantity"] == "3" and requests["amount"] == "0.60"


def test_another_tenants_current_draft_is_its_own(globex, bob, draft):
    body = session_client(bob).get("/api/v1/billing/current").json()
    assert body["invoice"]["id"] != draft.pk
    assert [line["kind"] for line in body["invoice"]["lines"]] == ["base_fee"]
    assert body["invoice"]["total"] == "29.00"


# ---- invoices -----------------------------------------------------------------------------


def test_invoices_are_listed_newest_first_and_paginated(carol, draft, finalized):
    body = session_client(carol).get("/api/v1/billing/invoices?limit=1").json()
    assert body["count"] == 2 and body["next"]
    assert [i["id"] for i in body["results"]] == [draft.pk]
    body = session_client(carol).get("/api/v1/billing/invoices?limit=1&offset=1").json()
    assert body["results"] == [{"id": finalized.pk, "number": "INV-202611-000042", "status": "finalized",
                                "period_start": "2026-01-01", "period_end": "2026-02-01", "currency": "eur",
                                "total": "46.77", "rated_at": None, "finalized_at": "2026-12-01T01:00:00Z"}]


def test_an_invoice_shows_its_lines_and_credit_notes(carol, finalized):
    body = session_client(carol).get(f"/api/v1/billing/invoices/{finalized.pk}").json()
    assert [line["kind"] for line in body["lines"]] == ["base_fee", "usage", "usage", "adjustment"]
    adjustment = body["lines"][3]
    assert adjustment["amount"] == "-0.47" and adjustment["service_start"] == "2026-10-31T23:00:00Z"
    [note] = body["credit_notes"]
    assert note["amount"] == "6.77" and note["reason"] == "Outage on the 12th" and note["number"]


def test_the_pdf_is_a_download_named_after_the_invoice_number(carol, finalized):
    response = session_client(carol).get(f"/api/v1/billing/invoices/{finalized.pk}.pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="invoice-INV-202611-000042.pdf"'
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages).split())
    assert "INV-202611-000042" in text and "46.77 EUR" in text and "Outage on the 12th" in text


def test_a_drafts_pdf_says_draft(carol, draft):
    response = session_client(carol).get(f"/api/v1/billing/invoices/{draft.pk}.pdf")
    assert response["Content-Disposition"].startswith('attachment; filename="draft-acme-')
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages).split())
    assert "DRAFT" in text and "29.53 USD" in text


def test_the_invoice_csv_lists_every_line(acme, draft):
    response = key_client(acme).get(f"/api/v1/billing/invoices/{draft.pk}.csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["kind"] for r in rows] == ["base_fee", "usage", "usage"]
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal("29.53")


# ---- the requests behind a line -----------------------------------------------------------


def test_the_requests_behind_a_line_are_paginated(carol, draft):
    line = line_of(draft, "requests")
    client = session_client(carol)
    body = client.get(f"/api/v1/billing/invoices/{draft.pk}/lines/{line.pk}/requests?limit=10&offset=2490").json()
    assert body["count"] == REQUESTS and len(body["results"]) == 10 and body["next"] is None
    first = client.get(f"/api/v1/billing/invoices/{draft.pk}/lines/{line.pk}/requests?limit=2").json()["results"]
    assert datetime.fromisoformat(first[0]["occurred_at"]) < datetime.fromisoformat(first[1]["occurred_at"])
    assert set(first[0]) == {"request_id", "occurred_at", "deployment_name", "endpoint", "status", "compute_ms",
                             "latency_ms"}
    base_fee = draft.lines.get(kind="base_fee")
    assert client.get(f"/api/v1/billing/invoices/{draft.pk}/lines/{base_fee.pk}/requests").json()["count"] == 0


@pytest.mark.parametrize("how", ["query", "accept"])
def test_every_request_behind_a_line_downloads_as_csv(acme, carol, draft, how):
    line = line_of(draft, "compute_cpu")
    url = f"/api/v1/billing/invoices/{draft.pk}/lines/{line.pk}/requests"
    client = session_client(carol)
    response = client.get(f"{url}?format=csv&limit=5") if how == "query" else client.get(url,
                                                                                          HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response.streaming and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="draft-acme-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == REQUESTS  # all of them: limit does not apply
    ids = set(UsageEvent.unscoped.filter(tenant=acme).values_list("request_id", flat=True))
    assert {uuid.UUID(r["request_id"]) for r in rows} == ids


@pytest_asyncio.fixture
async def close_db_connections():
    """The view reads the database from the sync thread: close its connection, so that the
    test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_csv_streams_chunk_by_chunk(carol, draft, recwarn, close_db_connections):
    """The portal is served by uvicorn: Django would read a plain iterator whole into memory
    there (with a warning) before sending a byte."""
    from django.test import AsyncClient

    line = await sync_to_async(line_of)(draft, "requests")
    client = AsyncClient()
    await client.aforce_login(carol)
    response = await client.get(f"/api/v1/billing/invoices/{draft.pk}/lines/{line.pk}/requests?format=csv")
    assert response.status_code == 200 and response.streaming
    chunks = [chunk async for chunk in response.streaming_content]
    assert len(chunks) == 3  # 1,000 rows at a time
    assert b"".join(chunks).decode().count("\r\n") == REQUESTS + 1
    assert not [w for w in recwarn if "consume synchronous iterators" in str(w.message)]


def test_a_format_other_than_json_or_csv_is_refused(carol, draft):
    line = line_of(draft, "requests")
    response = session_client(carol).get(f"/api/v1/billing/invoices/{draft.pk}/lines/{line.pk}/requests?format=xml")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request" and "format" in response.json()["error"]["message"]


def test_a_line_named_under_another_of_the_tenants_invoices_is_404(carol, draft, finalized):
    line = line_of(draft, "requests")
    response = session_client(carol).get(f"/api/v1/billing/invoices/{finalized.pk}/lines/{line.pk}/requests")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_an_error_asked_for_as_csv_is_json(carol, draft):
    response = session_client(carol).get("/api/v1/billing/invoices/999999/lines/1/requests?format=csv")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


# ---- prices -------------------------------------------------------------------------------


def test_the_prices_show_the_plan_the_version_in_force_and_the_next(carol, prices):
    version, upcoming = prices
    body = session_client(carol).get("/api/v1/billing/prices").json()
    assert body["plan"]["slug"] == "standard" and body["currency"] == "usd"
    assert body["in_force"]["id"] == version.pk and body["in_force"]["base_fee"] == "29.00"
    requests = next(c for c in body["in_force"]["prices"] if c["component"] == "requests")
    assert requests == {"component": "requests", "label": "Inference requests, per 1,000",
                        "unit": "1,000 requests", "free_allowance": "1",
                        "tiers": [{"up_to": "1", "unit_price": "0.40"}, {"up_to": None, "unit_price": "0.20"}]}
    assert [v["id"] for v in body["upcoming"]] == [upcoming.pk]
    assert body["upcoming"][0]["note"] == "New year prices"


def test_a_plan_without_prices_says_so(carol):
    body = session_client(carol).get("/api/v1/billing/prices").json()
    assert body == {"plan": {"id": Plan.objects.get(is_default=True).pk, "name": "Standard", "slug": "standard"},
                    "currency": None, "in_force": None, "upcoming": []}


# ---- the spend limit ----------------------------------------------------------------------


def test_an_owner_sets_the_spend_limit(acme, alice, prices):
    response = session_client(alice).patch("/api/v1/billing/spend-limit", {"amount": "100.00",
                                                                           "enforcement": "soft"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["limit"] == "100.00" and response.json()["enforcement"] == "soft"
    account = BillingAccount.objects.get(tenant=acme)
    assert (account.spend_limit, account.spend_limit_enforcement) == (Decimal("100.00"), "soft")
    entry = AuditLog.unscoped.get(tenant=acme, event_type="spend_limit.changed")
    assert entry.surface == "api" and entry.acting_user == alice
    # Only the field given changes; null removes the limit.
    session_client(alice).patch("/api/v1/billing/spend-limit", {"enforcement": "hard"}, format="json")
    account.refresh_from_db()
    assert (account.spend_limit, account.spend_limit_enforcement) == (Decimal("100.00"), "hard")
    response = session_client(alice).patch("/api/v1/billing/spend-limit", {"amount": None}, format="json")
    assert response.json()["limit"] is None
    account.refresh_from_db()
    assert account.spend_limit is None


@pytest.mark.parametrize("payload, message", [
    ({"amount": 100.5}, 'Give the amount as a decimal string, e.g. "100.00".'),
    ({"amount": "12.345"}, "no more than 2 decimal places"),
    ({"amount": "-5.00"}, "The spend limit cannot be negative."),
    ({"amount": "lots"}, "A valid number is required."),
    ({"enforcement": "maybe"}, '"maybe" is not a valid choice.'),
    ({}, "Give amount, enforcement, or both."),
    ({"amount": "500.01"}, "The spend limit can be at most 500.00 (set by the platform's admins)."),
])
def test_a_bad_spend_limit_is_a_400_that_says_why_and_changes_nothing(acme, alice, payload, message):
    account = billing_account_for(tenant=acme)
    BillingAccount.objects.filter(pk=account.pk).update(spend_limit=Decimal("50.00"),
                                                        spend_limit_max=Decimal("500.00"))
    response = session_client(alice).patch("/api/v1/billing/spend-limit", payload, format="json")
    assert response.status_code == 400, response.json()
    assert message in response.json()["error"]["message"]
    account.refresh_from_db()
    assert account.spend_limit == Decimal("50.00")
    assert not AuditLog.unscoped.filter(event_type="spend_limit.changed").exists()


@pytest.mark.parametrize("who, message", [
    ("member", "Your role in this tenant is read-only (member); ask an owner or admin."),
    ("admin", "Only owners may set the spend limit; ask an owner of this tenant."),
    ("key", "Only an owner, signed in, may set the spend limit: API keys cannot, whoever made them."),
])
def test_only_an_owner_sets_the_spend_limit(acme, carol, dave, who, message):
    client = {"member": lambda: session_client(carol), "admin": lambda: session_client(dave),
              "key": lambda: key_client(acme)}[who]()
    response = client.patch("/api/v1/billing/spend-limit", {"amount": "10.00"}, format="json")
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "permission_denied", "message": message}}
    assert not BillingAccount.objects.filter(tenant=acme, spend_limit__isnull=False).exists()


# ---- tenancy ------------------------------------------------------------------------------

OBJECT_PATHS = [
    "/api/v1/billing/invoices/{invoice}",
    "/api/v1/billing/invoices/{invoice}.pdf",
    "/api/v1/billing/invoices/{invoice}.csv",
    "/api/v1/billing/invoices/{invoice}/lines/{line}/requests",
    "/api/v1/billing/invoices/{invoice}/lines/{line}/requests?format=csv",
    "/api/v1/billing/invoices/{own_invoice}/lines/{line}/requests",
]
READS = ["/api/v1/billing/current", "/api/v1/billing/invoices", "/api/v1/billing/prices", *OBJECT_PATHS[:5]]


@pytest.fixture
def acme_billing(acme, globex, draft, finalized):
    own = invoice_draft_refresh(tenant=globex, period_start=draft.period_start)
    ids = {"invoice": draft.pk, "line": line_of(draft, "requests").pk, "own_invoice": own.pk}
    before = {"invoices": list(Invoice.unscoped.filter(tenant=acme).order_by("pk").values()),
              "lines": list(InvoiceLine.objects.filter(invoice__tenant=acme).order_by("pk").values()),
              "notes": list(CreditNote.unscoped.filter(tenant=acme).values())}
    return ids, before


@pytest.mark.parametrize("auth", ["key", "session"])
@pytest.mark.parametrize("path", OBJECT_PATHS)
def test_another_tenant_gets_404_for_every_invoice_and_line(globex, bob, acme, acme_billing, path, auth):
    ids, before = acme_billing
    client = key_client(globex) if auth == "key" else session_client(bob)
    response = client.get(path.format(**ids))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert "No such invoice in this tenant." in response.json()["error"]["message"] or \
        "No such line on this invoice." in response.json()["error"]["message"]
    assert list(Invoice.unscoped.filter(tenant=acme).order_by("pk").values()) == before["invoices"]
    assert list(InvoiceLine.objects.filter(invoice__tenant=acme).order_by("pk").values()) == before["lines"]
    assert list(CreditNote.unscoped.filter(tenant=acme).values()) == before["notes"]


@pytest.mark.parametrize("path", OBJECT_PATHS[:5])
def test_another_tenants_invoice_answers_as_one_that_exists_nowhere(globex, acme_billing, path):
    ids, _ = acme_billing
    client = key_client(globex)
    theirs = client.get(path.format(**ids))
    nowhere = client.get(path.format(invoice=2**31 - 1, line=2**31 - 1, own_invoice=ids["own_invoice"]))
    assert (theirs.status_code, theirs.json()) == (nowhere.status_code, nowhere.json())


def test_another_tenants_lists_hold_none_of_acmes_invoices(globex, acme_billing):
    ids, _ = acme_billing
    body = key_client(globex).get("/api/v1/billing/invoices").json()
    assert [i["id"] for i in body["results"]] == [ids["own_invoice"]]


@pytest.mark.parametrize("auth", ["key", "session"])
@pytest.mark.parametrize("path", READS)
def test_members_and_keys_read_every_billing_surface(acme, carol, acme_billing, path, auth):
    ids, _ = acme_billing
    client = key_client(acme) if auth == "key" else session_client(carol)
    assert client.get(path.format(**ids)).status_code == 200


@pytest.mark.parametrize("path", [*READS, "/api/v1/billing/spend-limit"])
def test_without_credentials_every_billing_surface_is_401(acme_billing, path):
    ids, _ = acme_billing
    client = APIClient()
    response = client.patch(path, {"amount": "1.00"}, format="json") if path.endswith("spend-limit") else \
        client.get(path.format(**ids))
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_an_infer_only_key_is_403(acme, acme_billing):
    response = key_client(acme, scopes=["infer"]).get("/api/v1/billing/current")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This API key lacks the 'manage' scope."


# ---- the schema ---------------------------------------------------------------------------


def test_the_schema_documents_the_files_money_as_strings_and_json_errors(alice):
    schema = session_client(alice).get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    pdf = schema["paths"]["/api/v1/billing/invoices/{invoice_id}.pdf"]["get"]["responses"]
    assert list(pdf["200"]["content"]) == ["application/pdf"]
    assert list(pdf["404"]["content"]) == ["application/json"]
    requests = schema["paths"]["/api/v1/billing/invoices/{invoice_id}/lines/{line_id}/requests"]["get"]
    assert set(requests["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert list(requests["responses"]["400"]["content"]) == ["application/json"]
    assert {p["name"] for p in requests["parameters"]} >= {"format", "limit", "offset"}
    line = schema["components"]["schemas"]["InvoiceLine"]["properties"]
    assert line["amount"]["type"] == "string" and line["quantity"]["type"] == "string"
    body = schema["components"]["schemas"]["PatchedSpendLimitRequest"]["properties"]
    assert body["amount"]["type"] == "string" and body["amount"]["nullable"] is True
