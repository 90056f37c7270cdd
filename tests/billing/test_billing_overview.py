"""The Billing page's data: the draft (rated when missing or older than a minute, not
otherwise), its cost so far, the forecast's method, the daily chart that adds up to the
usage lines, the table by deployment × component, the prices in force and the invoices;
another tenant sees none of it."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import Invoice
from billing.pricing import money_round
from billing.selectors import billing_overview
from tests.billing.rating_fixtures import event, plan_with_prices, roll

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 11, 12, tzinfo=UTC)  # 10.5 days (252 h) into a 720-hour month


@pytest.fixture
def metered(acme):
    acme.plan = plan_with_prices()
    acme.save(update_fields=["plan"])
    return acme


def test_overview_of_the_month_so_far(metered, globex, django_assert_max_num_queries):
    for day, count in [(2, 3), (5, 2)]:
        for n in range(count):
            event(metered, datetime(2026, 11, day, 9, n, tzinfo=UTC), compute_ms=1000)
    roll(datetime(2026, 11, 2, 9, tzinfo=UTC), datetime(2026, 11, 5, 9, tzinfo=UTC))

    overview = billing_overview(tenant=metered, now=NOW)
    draft = overview["draft"]
    assert draft.period_start == NOW.date().replace(day=1) and draft.status == "draft"
    # 5 requests: free, 0.005, 0.005, 0.0025, 0.0025 = 0.015 -> 0.02; 5 s cpu: 4 × 0.0125 = 0.05
    assert overview["cost_so_far"] == draft.total == Decimal("10.07")
    assert [(row["day"].day, row["deployment_name"], row["amount"]) for row in overview["daily"]] == [
        (2, "gone", Decimal("0.04")),  # 0.01 requests + 0.025 cpu = 0.035 -> 0.04 shown
        (5, "gone", Decimal("0.03")),  # 0.005 + 0.025 = 0.03
    ]
    usage_exact = Decimal("0.065")
    assert overview["forecast"] == money_round(Decimal("10.00") + usage_exact / 252 * 720)
    [group] = [g for g in overview["table"] if g["deployment"] == "gone"]
    assert [(row["component"], row["quantity"], row["amount"]) for row in group["rows"]] == [
        ("requests", Decimal("0.005"), Decimal("0.02")), ("compute_cpu", Decimal(5), Decimal("0.05"))]
    assert overview["plan"]["slug"] == "metered" and overview["plan"]["currency"] == "usd"
    requests = next(p for p in overview["plan"]["prices"] if p["component"] == "requests")
    assert requests["free_allowance"] == Decimal("0.001") and [t["unit_price"] for t in requests["tiers"]] == [5, 2.5]
    assert [i["id"] for i in overview["invoices"]] == [draft.pk]

    # Within a minute the draft is read, not rated again.
    rated_at = Invoice.unscoped.get(pk=draft.pk).rated_at
    with django_assert_max_num_queries(12):
        again = billing_overview(tenant=metered, now=NOW)
    assert again["cost_so_far"] == Decimal("10.07") and Invoice.unscoped.get(pk=draft.pk).rated_at == rated_at
    assert [line.pk for line in again["lines"]] == [line.pk for line in overview["lines"]]

    other = billing_overview(tenant=globex, now=NOW)  # no usage, and its plan has no prices
    assert (other["draft"], other["cost_so_far"], other["daily"], other["invoices"]) == (None, 0, [], [])
    assert not Invoice.objects.for_tenant(globex).exists()


def test_a_stale_draft_is_rated_again(metered):
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    event(metered, at)
    roll(at)
    first = billing_overview(tenant=metered, now=NOW)
    event(metered, at)
    roll(at)
    Invoice.unscoped.filter(pk=first["draft"].pk).update(rated_at=datetime(2026, 1, 1, tzinfo=UTC))
    later = billing_overview(tenant=metered, now=NOW + timedelta(minutes=2))
    # The second request: 0.005 -> 0.01, and its second of cpu beyond the free one: 0.0125 -> 0.01.
    assert later["cost_so_far"] == first["cost_so_far"] + Decimal("0.02")
