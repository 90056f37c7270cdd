"""The Billing page and the invoice pages as owners, members and other tenants see them; the
spend limit form; the past-due and spend-limit banners on every page."""
import csv
import io
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pypdf import PdfReader

from billing.invoicing import billing_account_for
from billing.models import BillingAccount, InvoiceLine, LineKind, SpendAlert
from billing.spend import billing_past_due_set
from graph_editor.services import model_version_upload
from portal.context_processors import billing_banners
from tenants.models import AuditLog
from tests.portal.billing_fixtures import BASE_FEE, NEXT_BASE_FEE, billing_built
from tests.portal.test_pages import flashes, table_rows


@pytest.fixture
def billing(acme, digits_onnx):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    return billing_built(acme, version)


def page_of(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode().replace("&#x27;", "'")


def money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def test_the_owner_sees_the_month_its_chart_table_prices_limit_and_invoices(client, alice, billing):
    client.force_login(alice)
    response = client.get("/billing/")
    page = response.content.decode().replace("&#x27;", "'")
    draft = billing.draft
    draft.refresh_from_db()
    # The cost so far is the live draft's total; the forecast is at least that.
    assert re.search(r'data-cost-so-far>([\d,.]+)<', page).group(1) == money(draft.total)
    forecast = Decimal(re.search(r'data-forecast>([\d,.]+)<', page).group(1).replace(",", ""))
    assert forecast >= draft.total
    assert 'href="/billing/" class="active"' in page

    # The chart's data: each day's cost per deployment, in the plan's currency.
    chart = json.loads(re.search(r'<script id="billing-chart-data" type="application/json">(.*?)</script>', page,
                                 re.S).group(1))
    assert chart["currency"] == "usd" and chart["period_start"] == f"{billing.now:%Y-%m}-01"
    assert {row["deployment_name"] for row in chart["daily"] if Decimal(row["amount"]) > 0} == {
        "digits", "digits-pipeline", "vision"}
    assert 'data-billing-chart data-source="billing-chart-data"' in page

    # The table: every line of the draft, by deployment × component, adding up to the total.
    rows = table_rows(page, "billing-by-deployment")
    assert rows[0] == ["Deployment", "Component", "Quantity", "Unit", "Amount"]
    assert rows[1] == ["Plan", "Monthly base fee", "1", "month", money(BASE_FEE)]
    for row, above in zip(rows[2:-1], rows[1:-2], strict=True):  # a deployment is named on its first row
        row[0] = row[0] or above[0]
    assert ["vision", "Compute on GPU, per second", "10", "second", "1.00"] in rows
    assert ["digits", "Late usage: Compute on CPU, per second", "30", "second", "0.30"] in rows
    assert [row[0] for row in rows[1:-1]].count("digits-pipeline") == 2
    lines = list(InvoiceLine.objects.filter(invoice=draft))
    assert len(rows) - 2 == len(lines)
    assert sum(Decimal(row[4]) for row in rows[1:-1]) == draft.total
    assert rows[-1] == ["Total so far (USD)", money(draft.total)]

    # The plan's prices in force, and the next version.
    prices = table_rows(page, "plan-prices")
    assert prices[1] == ["Monthly base fee", "–", "10.00 USD"]
    assert prices[3] == ["Compute on CPU, per second", "60 seconds",
                         "Next 10 seconds: 0.02 USD per second Beyond that: 0.01 USD per second"]
    assert prices[4][1] == "none"
    assert "New prices from" in page and table_rows(page, "upcoming-prices")[1] == [
        "Monthly base fee", "–", f"{NEXT_BASE_FEE} USD"]

    # No limit yet; the owner gets the form.
    assert 'data-spend-limit-form' in page and "no monthly spend limit" in page
    # Invoices: the draft, then last month's, each linking to its page.
    invoices = table_rows(page, "invoices")
    assert [row[:4] for row in invoices[1:]] == [
        ["Draft", f"{billing.now:%B %Y}", "draft", f"{money(draft.total)} USD"],
        [billing.finalized.number, f"{billing.finalized.period_start:%B %Y}", "finalized",
         f"{money(billing.finalized.total)} USD"]]
    assert f'href="/billing/invoices/{draft.pk}/"' in page
    assert f'href="/billing/invoices/{billing.finalized.pk}/"' in page


def test_a_member_reads_everything_but_cannot_change_the_limit(client, alice, carol, billing):
    client.force_login(carol)
    page = page_of(client, "/billing/")
    assert "data-spend-limit-form" not in page and "Only the tenant's owners change the spend limit." in page
    assert table_rows(page, "invoices")[1][0] == "Draft"
    assert page_of(client, f"/billing/invoices/{billing.finalized.pk}/")
    response = client.post("/billing/spend-limit/", {"amount": "5", "enforcement": "hard"})
    assert response.status_code == 403
    assert not BillingAccount.objects.filter(tenant=billing.tenant, spend_limit__isnull=False).exists()


def test_the_owner_sets_the_limit_and_sees_where_the_month_stands(client, alice, billing,
                                                                  django_capture_on_commit_callbacks):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/billing/spend-limit/", {"amount": "50", "enforcement": "hard"}, follow=True)
    assert response.redirect_chain[-1][0] == "/billing/"
    assert flashes(response) == ["Set the monthly spend limit to 50.00 (hard): the gateway applies it from the "
                                 "next request."]
    account = BillingAccount.objects.get(tenant=billing.tenant)
    assert (account.spend_limit, account.spend_limit_enforcement) == (Decimal("50.00"), "hard")
    assert AuditLog.objects.for_tenant(billing.tenant).filter(event_type="spend_limit.changed").count() == 1
    page = response.content.decode()
    draft = billing.draft
    draft.refresh_from_db()
    assert re.search(r"data-spent>([\d,.]+)<", page).group(1) == money(draft.total)
    assert re.search(r"data-limit>([\d,.]+)<", page).group(1) == "50.00"
    percent = (draft.total * 100 / 50).quantize(Decimal("0.1"))
    assert f"data-spend-percent>{percent}%<" in page
    # The form shows what is set; emptying the amount removes the limit.
    assert 'name="amount" value="50.00"' in page
    client.post("/billing/spend-limit/", {"amount": "", "enforcement": "soft"})
    account.refresh_from_db()
    assert account.spend_limit is None


@pytest.mark.parametrize("amount, enforcement, error", [
    ("500", "hard", "The spend limit can be at most 200.00 (set by the platform's admins)."),
    ("50", "soft", "The spend limit must be hard: the platform's admins cap this account's spend at 200.00."),
    ("-1", "hard", "The spend limit cannot be negative."),
    ("12.345", "hard", "The spend limit has at most 2 decimals (cents), not 12.345."),
    ("a lot", "hard", "Give an amount such as 250 or 99.50, or leave it empty for no limit."),
])
def test_a_limit_the_platform_refuses_is_shown_on_the_form_and_nothing_changes(client, alice, billing, amount,
                                                                               enforcement, error):
    account = billing_account_for(tenant=billing.tenant)
    account.spend_limit_max = Decimal("200.00")
    account.spend_limit = Decimal("100.00")
    account.save()
    client.force_login(alice)
    response = client.post("/billing/spend-limit/", {"amount": amount, "enforcement": enforcement})
    assert response.status_code == 400
    page = response.content.decode().replace("&#x27;", "'")
    assert f'<div class="field-error" data-field-error="amount">{error}</div>' in page
    assert f'value="{amount}"' in page  # what was typed stays
    account.refresh_from_db()
    assert (account.spend_limit, account.spend_limit_enforcement) == (Decimal("100.00"), "hard")


def test_an_invoice_page_shows_its_lines_tiers_adjustments_and_credit_notes(client, carol, billing):
    client.force_login(carol)
    finalized = billing.finalized
    page = page_of(client, f"/billing/invoices/{finalized.pk}/")
    assert f"<span data-invoice-number>{finalized.number}</span>" in page
    rows = table_rows(page, "invoice-lines")
    assert rows[0] == ["Description", "Quantity", "Unit", "Unit price", "Amount", "Requests"]
    assert rows[1][:5] == [f"Monthly base fee, {finalized.period_start:%Y-%m}", "1", "month", "10.00", "10.00"]
    cpu = next(row for row in rows if row[0].startswith("Compute on CPU"))
    # 90 s: the first 60 free, the next 10 at 0.02, the rest at 0.01.
    assert cpu[1:5] == ["90", "second", "0 – 60: 60 free 60 – 70: 10 × 0.02 70 – 90: 20 × 0.01", "0.40"]
    assert cpu[5] == "request ids (CSV)"
    assert rows[-1] == ["Total (USD)", money(finalized.total), ""]
    assert table_rows(page, "credit-notes")[1][2:] == ["Goodwill for the outage of the 3rd", "−1.00"]
    assert re.search(r"data-invoice-balance>([\d,.]+)<", page).group(1) == money(finalized.total - 1)

    # The late call of last month is on this month's draft, dated.
    page = page_of(client, f"/billing/invoices/{billing.draft.pk}/")
    late = [row for row in table_rows(page, "invoice-lines") if "adjustment" in row[0]]
    month = billing.late_event.occurred_at
    assert any(f"(usage of {month:%Y-%m}-" in row[0] and row[4] == "0.30" for row in late), late


def test_an_invoice_downloads_as_pdf_and_csv_and_each_line_as_its_request_ids(client, carol, billing):
    client.force_login(carol)
    finalized = billing.finalized
    response = client.get(f"/billing/invoices/{finalized.pk}/pdf/")
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="invoice-{finalized.number}.pdf"'
    assert response.content.startswith(b"%PDF-")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages)
    assert finalized.number in text and "Goodwill for the outage of the 3rd" in text

    response = client.get(f"/billing/invoices/{finalized.pk}/csv/")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sum(Decimal(row["amount"]) for row in rows) == finalized.total - 1

    # The late adjustment's requests: exactly the late call.
    line = billing.draft.lines.get(kind=LineKind.ADJUSTMENT, component="compute_cpu")
    page = page_of(client, f"/billing/invoices/{billing.draft.pk}/")
    url = f"/billing/invoices/{billing.draft.pk}/lines/{line.pk}/requests.csv"
    assert f'href="{url}"' in page
    response = client.get(url)
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["request_id"] for row in rows] == [str(billing.late_event.request_id)]
    # The draft's CPU line of digits: the four calls of this month on it.
    line = billing.draft.lines.get(kind=LineKind.USAGE, component="compute_cpu", deployment_name="digits")
    response = client.get(f"/billing/invoices/{billing.draft.pk}/lines/{line.pk}/requests.csv")
    assert len(list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))) == 4


def test_another_tenants_invoices_are_not_found(client, bob, billing):
    client.force_login(bob)
    invoice = billing.finalized
    line = invoice.lines.exclude(kind=LineKind.BASE_FEE).first()
    for url in (f"/billing/invoices/{invoice.pk}/", f"/billing/invoices/{invoice.pk}/pdf/",
                f"/billing/invoices/{invoice.pk}/csv/",
                f"/billing/invoices/{invoice.pk}/lines/{line.pk}/requests.csv"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert invoice.number not in response.content.decode()
    # Bob's own Billing page knows nothing of acme's.
    page = page_of(client, "/billing/")
    assert invoice.number not in page and "vision" not in page
    assert [row[0] for row in table_rows(page, "invoices")[1:]] in ([], ["Draft"])


def test_a_line_of_another_invoice_is_not_found(client, alice, billing):
    client.force_login(alice)
    line = billing.finalized.lines.exclude(kind=LineKind.BASE_FEE).first()
    assert client.get(f"/billing/invoices/{billing.draft.pk}/lines/{line.pk}/requests.csv").status_code == 404


@pytest.mark.parametrize("url", ["/", "/usage/", "/billing/", "/quotas/"])
def test_a_tenant_past_due_sees_a_banner_on_every_page(client, carol, acme, url, settings):
    settings.BILLING_PAST_DUE_GRACE_S = 3 * 86400
    failed = timezone.now() - timedelta(days=1)
    billing_past_due_set(tenant=acme, since=failed)
    client.force_login(carol)
    page = page_of(client, url)
    refused = failed + timedelta(days=3)
    assert (f"Payment failed on {failed:%Y-%m-%d %H:%M} UTC; requests will be refused from "
            f"{refused:%Y-%m-%d %H:%M} UTC — update your payment method.") in page
    assert 'data-billing-banner="past_due"' in page


def test_the_past_due_banner_says_requests_are_refused_once_the_grace_is_over(acme, settings):
    settings.BILLING_PAST_DUE_GRACE_S = 3600
    failed = timezone.now() - timedelta(hours=2)
    billing_past_due_set(tenant=acme, since=failed)
    [banner] = billing_banners(acme)
    assert f"requests are refused since {failed + timedelta(hours=1):%Y-%m-%d %H:%M} UTC" in banner["text"]
    billing_past_due_set(tenant=acme, since=None)
    assert billing_banners(acme) == []


@pytest.mark.parametrize("enforcement, level, says", [
    ("hard", "error", "requests are refused until {next} 00:00 UTC, or until an owner raises the limit."),
    ("soft", "warning", "It is soft: requests still go through."),
])
def test_reaching_the_spend_limit_shows_a_banner_until_the_limit_is_raised(client, carol, acme, enforcement, level,
                                                                           says):
    now = timezone.now()
    account = billing_account_for(tenant=acme)
    account.spend_limit, account.spend_limit_enforcement = Decimal("20.00"), enforcement
    account.save()
    SpendAlert.objects.for_tenant(acme).create(tenant=acme, period=f"{now:%Y%m}", threshold=100,
                                               spent=Decimal("20.40"), spend_limit=Decimal("20.00"))
    client.force_login(carol)
    page = page_of(client, "/usage/")
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
    assert f'class="banner banner-{level}" role="alert" data-billing-banner="spend_limit"' in page
    assert "The monthly spend limit of 20.00 USD is reached" in page
    assert says.format(next=f"{next_month:%Y-%m-%d}") in page
    assert '<a href="/billing/">Billing</a>' in page
    # The 100% alert of last month, or a limit raised since, says nothing.
    account.spend_limit = Decimal("40.00")
    account.save()
    assert "data-billing-banner" not in page_of(client, "/usage/")


def test_the_banners_cost_one_query_per_page(acme):
    account = billing_account_for(tenant=acme)
    account.past_due_since = timezone.now()
    account.save()
    with CaptureQueriesContext(connection) as queries:
        banners = billing_banners(acme)
    assert len(queries) == 1
    assert [b["kind"] for b in banners] == ["past_due"]


def test_an_admin_who_is_not_an_owner_gets_no_form_and_is_refused(client, acme, billing):
    from tenants.models import Role
    from tenants.services import membership_add, user_create

    erin = user_create(username="erin", password="erin-password-1")
    membership_add(tenant=acme, user=erin, role=Role.ADMIN)
    client.force_login(erin)
    assert "data-spend-limit-form" not in page_of(client, "/billing/")
    response = client.post("/billing/spend-limit/", {"amount": "5", "enforcement": "hard"})
    assert response.status_code == 403
    assert "Only the tenant's owners can change its spend limit." in response.content.decode().replace("&#x27;", "'")
    assert not BillingAccount.objects.filter(tenant=acme, spend_limit__isnull=False).exists()
