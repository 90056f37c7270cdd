"""Billing in the admin, as platform staff: price versions with their prices (tiers checked
on the field, read-only once in force, every change in the audit log), invoices (read-only,
drafts re-rated, finalized ones refused), credit notes made through their service, and
billing accounts whose maximum spend limit admins set."""
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.invoicing import billing_account_for, invoice_draft_refresh, month_start
from billing.models import BillingAccount, CreditNote, Invoice, Price, PriceVersion, UsageEvent
from billing.rollups import hour_start, usage_rollup_hour
from tenants.models import AuditLog, Plan
from tests.billing.invoice_builders import invoice_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def plan(db):
    return Plan.objects.get(is_default=True)


def version_form(plan, *, effective_from, base_fee="29.00", prices=(), initial=0, currency="usd", **extra) -> dict:
    data = {"plan": plan.pk, "effective_from_0": f"{effective_from:%Y-%m-%d}",
            "effective_from_1": f"{effective_from:%H:%M:%S}", "currency": currency, "base_fee": base_fee, "note": "",
            "prices-TOTAL_FORMS": str(len(prices)), "prices-INITIAL_FORMS": str(initial),
            "prices-MIN_NUM_FORMS": "0", "prices-MAX_NUM_FORMS": "1000", **extra}
    for index, price in enumerate(prices):
        for field, value in price.items():
            data[f"prices-{index}-{field}"] = value
    return data


def next_week():
    return (timezone.now() + timedelta(days=7)).replace(microsecond=0, second=0, minute=0)


REQUESTS_PRICE = {"component": "requests", "free_allowance": "1",
                  "tiers": '[{"up_to": "10", "unit_price": 0.40}, {"up_to": null, "unit_price": "0.25"}]'}


def audit(event_type: str) -> list[AuditLog]:
    return list(AuditLog.unscoped.filter(event_type=event_type).order_by("pk"))


# ---- price versions -----------------------------------------------------------------------


def test_a_price_version_is_added_with_its_prices_and_audited(admin_client, admin_user, plan):
    response = admin_client.post("/admin/billing/priceversion/add/",
                                 version_form(plan, effective_from=next_week(), prices=[REQUESTS_PRICE]))
    assert response.status_code == 302, response.context["adminform"].form.errors
    version = PriceVersion.objects.get(plan=plan)
    assert version.created_by == admin_user and version.base_fee == Decimal("29.00")
    price = Price.objects.get(version=version)
    # Stored as the Decimal strings rating reads, whatever was typed.
    assert price.tiers == [{"up_to": "10", "unit_price": "0.4"}, {"up_to": None, "unit_price": "0.25"}]
    [entry] = audit("price_version.created")
    assert (entry.object_type, entry.object_id, entry.surface, entry.acting_user) == (
        "price_version", version.pk, "admin", admin_user)
    assert entry.tenant_id is None
    assert entry.new_value["base_fee"] == "29.00"
    assert entry.new_value["prices"]["requests"] == {"free_allowance": "1", "tiers": price.tiers}


@pytest.mark.parametrize("tiers, message", [
    ('[{"up_to": "10", "unit_price": "0.40"}]', "The last tier must have no up_to (null)"),
    ('[{"up_to": "10", "unit_price": "0.40"}, {"up_to": "5", "unit_price": "0.30"}, '
     '{"up_to": null, "unit_price": "0.1"}]', "Tier 2: up_to must be more than the previous tier's (10)."),
    ('[{"up_to": null, "unit_price": "-1"}]', "Tier 1: unit_price cannot be negative."),
    ('[{"up_to": null, "unit_price": "cheap"}]', "Tier 1's unit_price must be a decimal number"),
    ("[]", "Give at least one tier"),
    ("not json", "Enter a valid JSON."),
])
def test_bad_tiers_are_shown_on_the_field_and_nothing_is_saved(admin_client, plan, tiers, message):
    price = {**REQUESTS_PRICE, "tiers": tiers}
    response = admin_client.post("/admin/billing/priceversion/add/",
                                 version_form(plan, effective_from=next_week(), prices=[price]))
    assert response.status_code == 200
    [inline] = response.context["inline_admin_formsets"]
    errors = inline.formset.forms[0].errors
    assert list(errors) == ["tiers"] and message in " ".join(errors["tiers"])
    assert not PriceVersion.objects.exists() and not audit("price_version.created")


@pytest.mark.parametrize("field, value, message", [
    ("effective_from", timezone.now() - timedelta(hours=1), "Prices change from a moment to come"),
    ("effective_from", next_week() + timedelta(minutes=30), "Prices take effect on the hour (UTC)"),
    ("currency", "US$", "Give an ISO 4217 code of three letters"),
    ("base_fee", "-1", "The base fee cannot be negative."),
])
def test_a_version_must_start_later_in_a_currency_and_without_a_negative_fee(admin_client, plan, field, value,
                                                                            message):
    kwargs = {"effective_from": next_week(), field: value}
    response = admin_client.post("/admin/billing/priceversion/add/", version_form(plan, **kwargs))
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors[field])
    assert not PriceVersion.objects.exists()


@pytest.fixture
def upcoming(plan):
    version = PriceVersion.objects.create(plan=plan, effective_from=next_week(), currency="usd",
                                          base_fee=Decimal("29.00"))
    price = Price.objects.create(version=version, component="requests", free_allowance=Decimal(1),
                                 tiers=[{"up_to": None, "unit_price": "0.40"}])
    return version, price


@pytest.fixture
def in_force(plan):
    version = PriceVersion.objects.create(plan=plan, effective_from=timezone.now() - timedelta(days=3),
                                          currency="usd", base_fee=Decimal("19.00"))
    price = Price.objects.create(version=version, component="requests", free_allowance=Decimal(0),
                                 tiers=[{"up_to": None, "unit_price": "0.50"}])
    return version, price


def test_an_upcoming_version_can_change_and_the_change_is_audited(admin_client, plan, upcoming):
    version, price = upcoming
    data = version_form(plan, effective_from=version.effective_from, base_fee="35.00", initial=1, prices=[
        {"id": price.pk, "version": version.pk, "component": "requests", "free_allowance": "2",
         "tiers": '[{"up_to": null, "unit_price": "0.35"}]'}])
    response = admin_client.post(f"/admin/billing/priceversion/{version.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    version.refresh_from_db()
    price.refresh_from_db()
    assert version.base_fee == Decimal("35.00") and price.tiers == [{"up_to": None, "unit_price": "0.35"}]
    [entry] = audit("price_version.changed")
    assert entry.old_value == {"base_fee": "29.00", "prices": {"requests": {
        "free_allowance": "1", "tiers": [{"up_to": None, "unit_price": "0.40"}]}}}
    assert entry.new_value == {"base_fee": "35.00", "prices": {"requests": {
        "free_allowance": "2", "tiers": [{"up_to": None, "unit_price": "0.35"}]}}}


def test_an_upcoming_version_can_be_deleted_and_that_is_audited(admin_client, upcoming):
    version, _ = upcoming
    response = admin_client.post(f"/admin/billing/priceversion/{version.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not PriceVersion.objects.filter(pk=version.pk).exists()
    [entry] = audit("price_version.deleted")
    assert entry.object_id == version.pk and entry.old_value["prices"]["requests"]["tiers"]


def test_a_version_in_force_is_read_only(admin_client, plan, in_force):
    version, price = in_force
    url = f"/admin/billing/priceversion/{version.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode() and "In force or past (read-only)" in page.content.decode()
    data = version_form(plan, effective_from=version.effective_from, base_fee="1.00", initial=1, prices=[
        {"id": price.pk, "version": version.pk, "component": "requests", "free_allowance": "0",
         "tiers": '[{"up_to": null, "unit_price": "0.01"}]'}])
    assert admin_client.post(url, data).status_code == 403
    assert admin_client.post(f"/admin/billing/priceversion/{version.pk}/delete/", {"post": "yes"}).status_code == 403
    version.refresh_from_db()
    price.refresh_from_db()
    assert version.base_fee == Decimal("19.00") and price.tiers == [{"up_to": None, "unit_price": "0.50"}]
    assert not AuditLog.unscoped.filter(object_type="price_version").exists()


def test_versions_are_listed_by_plan_and_state(admin_client, upcoming, in_force):
    response = admin_client.get("/admin/billing/priceversion/?state=upcoming")
    assert [v.pk for v in response.context["cl"].result_list] == [upcoming[0].pk]
    response = admin_client.get("/admin/billing/priceversion/")
    assert len(response.context["cl"].result_list) == 2
    assert response.context["action_form"] is None  # no bulk delete, which would not ask each version


# ---- invoices -----------------------------------------------------------------------------


@pytest.fixture
def draft(acme, in_force):
    hour = hour_start(timezone.now())
    UsageEvent.unscoped.bulk_create(
        UsageEvent(tenant=acme, request_id=uuid.uuid4(), deployment_name="digits", status=200, latency_ms=3,
                   compute_ms=10, occurred_at=hour + timedelta(microseconds=i)) for i in range(1000))
    usage_rollup_hour(hour=hour)
    return invoice_draft_refresh(tenant=acme, period_start=month_start(timezone.now()))


@pytest.fixture
def finalized(globex):
    return invoice_create(globex)


def test_invoices_are_listed_with_tenant_period_status_number_and_total(admin_client, draft, finalized):
    response = admin_client.get("/admin/billing/invoice/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "INV-202611-000042" in page and "46.77" in page and "19.50" in page and "Acme Corp" in page
    found = admin_client.get("/admin/billing/invoice/?q=INV-202611-000042").context["cl"].result_list
    assert [i.pk for i in found] == [finalized.pk]


def test_re_rating_a_draft_takes_in_new_usage_and_refuses_a_finalized_invoice(admin_client, acme, draft, finalized):
    assert draft.total == Decimal("19.50")  # 19.00 + 1,000 requests at 0.50 per 1,000
    hour = hour_start(timezone.now())
    UsageEvent.unscoped.bulk_create(
        UsageEvent(tenant=acme, request_id=uuid.uuid4(), deployment_name="digits", status=200, latency_ms=3,
                   compute_ms=10, occurred_at=hour + timedelta(seconds=1, microseconds=i)) for i in range(1000))
    usage_rollup_hour(hour=hour)
    response = admin_client.post("/admin/billing/invoice/", {"action": "rerate",
                                                             "_selected_action": [draft.pk, finalized.pk]},
                                 follow=True)
    notes = [str(m) for m in response.context["messages"]]
    assert "INV-202611-000042 is finalized and was not re-rated: correct it with a credit note." in notes
    assert "Re-rated 1 draft(s)." in notes
    draft.refresh_from_db()
    assert draft.total == Decimal("20.00")
    assert Invoice.unscoped.get(pk=finalized.pk).total == Decimal("46.77")
    [entry] = audit("invoice.rerated")
    assert entry.object_id == draft.pk and entry.surface == "admin"


def test_an_invoice_is_read_only_with_its_lines_and_a_pdf(admin_client, draft, finalized):
    url = f"/admin/billing/invoice/{finalized.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and "Compute on GPU — &lt;b&gt;R&amp;D&lt;/b&gt; model" in html
    assert admin_client.post(url, {"total": "0.00"}).status_code == 403
    assert admin_client.post(f"/admin/billing/invoice/{draft.pk}/change/", {"total": "0.00"}).status_code == 403
    assert Invoice.unscoped.get(pk=draft.pk).total == Decimal("19.50")
    assert admin_client.get("/admin/billing/invoice/add/").status_code == 403
    assert admin_client.post(f"/admin/billing/invoice/{draft.pk}/delete/", {"post": "yes"}).status_code == 403
    pdf = admin_client.get(f"/admin/billing/invoice/{finalized.pk}/pdf/")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == 'attachment; filename="invoice-INV-202611-000042.pdf"'
    assert f"/admin/billing/invoice/{finalized.pk}/pdf/" in html


# ---- credit notes -------------------------------------------------------------------------


def test_a_credit_note_is_made_through_its_service(admin_client, admin_user, finalized):
    response = admin_client.post("/admin/billing/creditnote/add/", {"invoice": finalized.pk, "amount": "6.77",
                                                                    "reason": "Outage on the 12th"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    note = CreditNote.unscoped.get(invoice=finalized)
    assert note.number.startswith("CN-") and note.tenant_id == finalized.tenant_id
    assert note.created_by == admin_user and note.amount == Decimal("6.77")
    [entry] = audit("credit_note.created")
    assert entry.surface == "admin" and entry.tenant_id == finalized.tenant_id
    # Then it cannot change.
    url = f"/admin/billing/creditnote/{note.pk}/change/"
    assert admin_client.post(url, {"amount": "1.00", "reason": "x"}).status_code == 403
    assert admin_client.post(f"/admin/billing/creditnote/{note.pk}/delete/", {"post": "yes"}).status_code == 403


@pytest.mark.parametrize("amount, message", [
    ("46.78", "At most 46.77 EUR can still be credited on INV-202611-000042"),
    ("0", "amount must be more than 0."),
])
def test_a_credit_note_the_service_refuses_shows_why(admin_client, finalized, amount, message):
    response = admin_client.post("/admin/billing/creditnote/add/", {"invoice": finalized.pk, "amount": amount,
                                                                    "reason": "Outage"})
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.non_field_errors())
    assert not CreditNote.unscoped.exists()


def test_a_draft_gets_no_credit_note(admin_client, draft):
    response = admin_client.post("/admin/billing/creditnote/add/", {"invoice": draft.pk, "amount": "1.00",
                                                                    "reason": "Outage"})
    assert response.status_code == 200
    assert "this one is still a draft: re-rate it instead" in " ".join(
        response.context["adminform"].form.non_field_errors())
    assert not CreditNote.unscoped.exists()


# ---- billing accounts ---------------------------------------------------------------------


def account_form(**values) -> dict:
    return {"email": "", "spend_limit_max": "", **values}


def test_admins_set_the_highest_spend_limit_and_nothing_of_stripes(admin_client, acme):
    account = billing_account_for(tenant=acme)
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id="cus_1")
    url = f"/admin/billing/billingaccount/{account.pk}/change/"
    response = admin_client.post(url, account_form(spend_limit_max="250.00", stripe_customer_id="cus_evil",
                                                   spend_limit="9999"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    account.refresh_from_db()
    assert account.spend_limit_max == Decimal("250.00")
    assert account.stripe_customer_id == "cus_1" and account.spend_limit is None
    [entry] = audit("billing_account.changed")
    assert (entry.object_type, entry.tenant_id, entry.surface) == ("billing_account", acme.pk, "admin")
    assert entry.old_value == {"spend_limit_max": None} and entry.new_value == {"spend_limit_max": "250.00"}


@pytest.mark.parametrize("maximum, message", [
    ("99.99", "The owners' spend limit is 100.00, above this maximum: ask them to lower it first, or allow at "
              "least 100.00."),
    ("-1", "The maximum cannot be negative."),
])
def test_a_maximum_below_the_owners_limit_is_refused(admin_client, acme, maximum, message):
    account = billing_account_for(tenant=acme)
    BillingAccount.objects.filter(pk=account.pk).update(spend_limit=Decimal("100.00"))
    response = admin_client.post(f"/admin/billing/billingaccount/{account.pk}/change/",
                                 account_form(spend_limit_max=maximum))
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors["spend_limit_max"])
    account.refresh_from_db()
    assert account.spend_limit_max is None and not audit("billing_account.changed")
