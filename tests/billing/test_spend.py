"""Spend limits as the services keep them (billing/spend.py, billing/alerts.py): owners set
them within what admins allow, audited; the gateway's entry holds the list prices, the
limit and an offset that brings its estimate to the ledger's exact total, never below it;
past due blocks after the grace; alerts at 50/80/100% are raised once a month and
emailed; counters Redis lost get their spend back."""
import math
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing.alerts import spend_alerts_check
from billing.invoicing import month_next, month_rating, month_start
from billing.models import BillingAccount, Price, PriceVersion, SpendAlert, UsageEvent, UsageRollup
from billing.quotas import quota_counters_restore
from billing.rollups import hour_start, usage_rollup_hour
from billing.spend import (
    billing_past_due_set,
    spend_limit_set,
    spend_publish_all,
    spend_refresh_all,
    spend_status,
)
from gateway.contract.errors import PlatformError
from gateway.contract.keys import bill_entry_name, use_counter_name
from tenants.directory import redis_client
from tenants.models import AuditLog, Plan
from tenants.quotas import tenant_plan_set
from workers.models import Deployment

pytestmark = pytest.mark.django_db
MICRO = Decimal(1_000_000)


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`with committed():` runs what the services inside put behind commit (the publication
    to Redis, the emails) as the block ends, as a commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def plan_with_prices(*, slug="metered", base_fee="0", effective_from=datetime(2020, 1, 1, tzinfo=UTC), **prices):
    """A plan whose one version prices each component given as (allowance, tiers)."""
    plan = Plan.objects.filter(slug=slug).first() or Plan.objects.create(name=slug.title(), slug=slug)
    version = PriceVersion.objects.create(plan=plan, effective_from=effective_from, currency="eur",
                                          base_fee=Decimal(base_fee))
    for component, (allowance, tiers) in prices.items():
        version.prices.create(component=component, free_allowance=Decimal(allowance),
                              tiers=[{"up_to": up_to, "unit_price": price} for up_to, price in tiers])
    return plan


@pytest.fixture
def priced(acme):
    """Requests 0.40 per 1,000 beyond 10,000 free then 0.25 beyond 1,000 more; CPU 0.0001
    per second, GPU 0.002 per second (beyond a free minute); a base fee of 5.00."""
    plan = plan_with_prices(base_fee="5.00",
                            requests=("10", [("1", "0.40"), (None, "0.25")]),
                            compute_cpu=("0", [(None, "0.0001")]),
                            compute_gpu=("60", [(None, "0.002")]),
                            reserved_memory=("0", [(None, "0.05")]))
    tenant_plan_set(tenant=acme, plan=plan)
    return plan


@pytest.fixture
def deployments(acme, digits_onnx):
    from graph_editor.services import model_version_upload

    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    cpu = Deployment.unscoped.create(tenant=acme, name="digits", model_version=version, hardware="cpu")
    gpu = Deployment.unscoped.create(tenant=acme, name="digits-gpu", model_version=version, hardware="gpu")
    return cpu, gpu


def events(tenant, deployment, count: int, *, compute_ms: float, at: datetime | None = None) -> None:
    at = at or hour_start(timezone.now())
    UsageEvent.unscoped.bulk_create([UsageEvent(
        tenant=tenant, request_id=uuid.uuid4(), deployment=deployment, deployment_name=deployment.name, status=200,
        endpoint="infer", latency_ms=3, upstream_ms=compute_ms, compute_ms=compute_ms, occurred_at=at)
        for _ in range(count)])


def entry(tenant) -> dict:
    return redis_client().hgetall(bill_entry_name(tenant.pk))


# ---- setting a limit ---------------------------------------------------------------------

@pytest.mark.parametrize("amount, enforcement, maximum, message", [
    (Decimal("-1"), "hard", None, "cannot be negative"),
    (Decimal("10.001"), "hard", None, "at most 2 decimals"),
    ("ten", "hard", None, "an amount like 250.00"),
    (Decimal("1e12"), "hard", None, "at most 9999999999.99"),
    (Decimal("10"), "strict", None, "'hard' or 'soft'"),
    (Decimal("100.01"), "hard", Decimal("100"), "at most 100"),
    (None, "hard", Decimal("100"), "at most 100"),
    (Decimal("50"), "soft", Decimal("100"), "must be hard"),
])
def test_a_bad_spend_limit_is_400_and_changes_nothing(acme, alice, committed, amount, enforcement, maximum,
                                                      message):
    BillingAccount.objects.create(tenant=acme, spend_limit=Decimal("20"), spend_limit_max=maximum)
    with committed(), pytest.raises(PlatformError) as refused:
        spend_limit_set(tenant=acme, amount=amount, enforcement=enforcement, actor=alice)
    assert (refused.value.status, refused.value.code) == (400, "invalid_spend_limit")
    assert message in refused.value.message
    account = BillingAccount.objects.get(tenant=acme)
    assert (account.spend_limit, account.spend_limit_enforcement) == (Decimal("20.00"), "hard")
    assert not AuditLog.unscoped.filter(event_type="spend_limit.changed").exists()
    assert entry(acme) == {}


@pytest.mark.parametrize("who", ["carol", "bob"])
def test_only_the_tenants_owners_set_its_limit(acme, carol, bob, who):
    actor = {"carol": carol, "bob": bob}[who]  # a member of acme; globex's owner
    with pytest.raises(PlatformError) as refused:
        spend_limit_set(tenant=acme, amount=Decimal("10"), enforcement="hard", actor=actor)
    assert (refused.value.status, refused.value.code) == (403, "permission_denied")
    assert not BillingAccount.objects.filter(tenant=acme, spend_limit__isnull=False).exists()


def test_an_owner_sets_a_limit_audited_and_published(acme, alice, priced, committed):
    with committed():
        account = spend_limit_set(tenant=acme, amount=Decimal("12.5"), enforcement="soft", actor=alice)
    assert (account.spend_limit, account.spend_limit_enforcement) == (Decimal("12.50"), "soft")
    [log] = AuditLog.unscoped.filter(event_type="spend_limit.changed")
    assert (log.tenant_id, log.old_value, log.new_value) == (
        acme.pk, {"spend_limit": None, "spend_limit_enforcement": "hard"},
        {"spend_limit": "12.50", "spend_limit_enforcement": "soft"})
    published = entry(acme)
    assert (published["limit"], published["soft"], published["cur"]) == ("12500000", "1", "EUR")

    with committed():
        spend_limit_set(tenant=acme, amount=None, enforcement="hard", actor=alice)
    assert "limit" not in entry(acme) and "soft" not in entry(acme)


# ---- what the gateway reads --------------------------------------------------------------

def test_the_entry_holds_the_list_prices_per_request_and_ms_of_each_hardware(acme, priced):
    spend_publish_all()
    # The highest tier prices: 0.40 per 1,000 requests, 0.0001 and 0.002 per second.
    assert entry(acme) == {"cur": "EUR", "req_cpu": "400", "req_gpu": "400", "ms_cpu": "0.1", "ms_gpu": "2"}


def test_a_tenant_whose_prices_cannot_be_read_does_not_hold_up_the_others(acme, globex, priced, caplog):
    tenant_plan_set(tenant=globex, plan=plan_with_prices(slug="flat", requests=("0", [(None, "1")])))
    # Acme comes first and fails: its plan's tiers were broken behind the admin's back.
    Price.objects.filter(version__plan=priced).update(tiers="broken")
    assert spend_refresh_all() == 1
    assert entry(globex)["req_cpu"] == "1000"
    assert f"publishing the spend entry of tenant {acme.pk} failed" in caplog.text


def test_the_version_in_force_at_the_hours_start_prices_the_gateway(acme, priced):
    now = timezone.now()
    version = PriceVersion.objects.create(plan=priced, effective_from=hour_start(now) + timedelta(minutes=1))
    version.prices.create(component="requests", tiers=[{"up_to": None, "unit_price": "9"}])
    spend_publish_all(now=hour_start(now) + timedelta(minutes=2))
    assert entry(acme)["req_cpu"] == "400"  # rating prices this hour by the previous version
    spend_publish_all(now=hour_start(now) + timedelta(hours=1))
    assert entry(acme)["req_cpu"] == "9000" and "ms_cpu" not in entry(acme)


def test_the_estimate_never_falls_below_the_exact_spend_and_converges_to_it(acme, alice, priced, deployments,
                                                                             committed):
    cpu, gpu = deployments
    with committed():
        spend_limit_set(tenant=acme, amount=Decimal("100"), enforcement="hard", actor=alice)
    # Nothing used yet: the month opens with its base fee.
    assert (entry(acme)["ofs"], entry(acme)["ofs_next"]) == ("5000000", "5000000")

    # 12,000 requests (10,000 free, 1,000 at 0.40, 1,000 at 0.25 per 1,000), on CPU and GPU,
    # and an hour of 2 GB reserved: what the invoice charges is far below list prices.
    events(acme, cpu, 9000, compute_ms=2.5)
    events(acme, gpu, 3000, compute_ms=40.125)
    now = timezone.now()
    # (In the month's last hour, which no roll of the test touches.)
    last_hour = datetime.combine(month_next(month_start(now)), datetime.min.time(), UTC) - timedelta(hours=1)
    UsageRollup.unscoped.create(tenant=acme, hour=last_hour, deployment_id=gpu.pk,
                                deployment_name=gpu.name, hardware="gpu", meter="reserved_gb_h",
                                quantity=Decimal("2"), events=0, rolled_at=now)
    usage_rollup_hour(hour=now)
    redis_client().flushdb()
    exact = month_rating(tenant=acme, period_start=month_start(now)).total
    # 5.00 + 0.40 + 0.25 + 22.5 s x 0.0001 + (120.375 - 60) s x 0.002 + 2 GB-h x 0.05
    assert exact == Decimal("5.00") + Decimal("0.65") + Decimal("0.00") + Decimal("0.12") + Decimal("0.10")
    # A counter Redis lost counts nothing: the estimate still starts at the exact total.
    spend_publish_all()
    assert spend_status(tenant=acme)["estimate"] == exact

    quota_counters_restore()  # the counter, as the gateway would have counted these requests
    spend_publish_all()
    counter = int(redis_client().hget(use_counter_name(f"t:{acme.pk}", now.strftime("%Y%m")), "spend"))
    assert counter == 9000 * math.ceil(400 + 0.1 * 2.5) + 3000 * math.ceil(400 + 2 * 40.125)

    estimate = spend_status(tenant=acme)["estimate"]
    assert exact <= estimate <= exact + Decimal("12000") / MICRO + Decimal("0.02")

    # Requests the rollups have not reached yet count at list price on top.
    events(acme, cpu, 10, compute_ms=1.0, at=now)
    redis_client().hincrby(use_counter_name(f"t:{acme.pk}", now.strftime("%Y%m")), "spend", 10 * 401)
    assert spend_status(tenant=acme)["estimate"] == estimate + Decimal(4010) / MICRO
    usage_rollup_hour(hour=now)
    spend_publish_all()
    exact = month_rating(tenant=acme, period_start=month_start(now)).total
    assert exact <= spend_status(tenant=acme)["estimate"] <= exact + Decimal("12010") / MICRO + Decimal("0.02")


# ---- past due ----------------------------------------------------------------------------

def test_past_due_blocks_after_the_grace_and_paying_unblocks(acme, priced, committed, settings):
    settings.BILLING_PAST_DUE_GRACE_S = 3600
    now = timezone.now()
    with committed():
        billing_past_due_set(tenant=acme, since=now - timedelta(minutes=59))
    assert "blocked" not in entry(acme)
    status = spend_status(tenant=acme)
    assert (status["past_due"], status["blocked"]) == (True, False)

    # The grace runs out: the minute's refresh publishes it. A further failure keeps the date.
    spend_refresh_all(now=now + timedelta(minutes=2))
    assert entry(acme)["blocked"] == "1"
    with committed():
        billing_past_due_set(tenant=acme, since=now)
    assert BillingAccount.objects.get(tenant=acme).past_due_since == now - timedelta(minutes=59)
    assert spend_status(tenant=acme, now=now + timedelta(minutes=2))["blocked"] is True

    with committed():
        billing_past_due_set(tenant=acme, since=None)
    assert "blocked" not in entry(acme) and entry(acme)["req_cpu"] == "400"
    assert spend_status(tenant=acme)["past_due"] is False
    assert list(AuditLog.unscoped.filter(tenant=acme, event_type__startswith="billing.")
                .order_by("id").values_list("event_type", flat=True)) == ["billing.past_due", "billing.paid"]


def test_the_refresh_drops_the_entries_of_tenants_that_are_gone(acme, priced):
    redis_client().hset(bill_entry_name(99999), mapping={"blocked": "1"})
    assert spend_publish_all() == 1
    assert not redis_client().exists(bill_entry_name(99999)) and entry(acme)


# ---- alerts ------------------------------------------------------------------------------

def test_alerts_at_50_80_100_percent_once_a_month_by_email(acme, alice, priced, deployments, committed,
                                                          mailoutbox):
    alice.email = "alice@acme.test"
    alice.save()
    with committed():
        spend_limit_set(tenant=acme, amount=Decimal("8.00"), enforcement="hard", actor=alice)
    # The base fee (5.00) is 62.5% of the limit.
    with committed():
        [half] = spend_alerts_check(tenant=acme)
    assert (half.threshold, half.spent, half.emailed_to) == (50, Decimal("5.00"), "alice@acme.test")
    [mail] = mailoutbox
    assert mail.to == ["alice@acme.test"] and "50% of the monthly spend limit" in mail.subject
    assert "spent 5.00 EUR" in mail.body and "limit of 8.00 EUR" in mail.body
    with committed():
        assert spend_alerts_check(tenant=acme) == []
    assert len(mailoutbox) == 1

    # 3.00 more of GPU compute (beyond its free minute) passes 80 and 100% at once: to the
    # billing email, once set.
    BillingAccount.objects.filter(tenant=acme).update(email="billing@acme.test")
    cpu, gpu = deployments
    events(acme, gpu, 1, compute_ms=1_560_000)
    usage_rollup_hour(hour=timezone.now())
    with committed():
        assert spend_refresh_all() == 1
    assert sorted(SpendAlert.objects.for_tenant(acme).values_list("threshold", flat=True)) == [50, 80, 100]
    assert mailoutbox[-1].to == ["billing@acme.test"] and "100%" in mailoutbox[-1].subject
    assert "refused" in mailoutbox[-1].body
    assert len(mailoutbox) == 2
    assert [a["threshold"] for a in spend_status(tenant=acme)["alerts"]] == [50, 80, 100]


@pytest.mark.django_db(transaction=True)
def test_two_checks_at_once_raise_each_threshold_once(acme, alice, priced, mailoutbox):
    alice.email = "alice@acme.test"
    alice.save()
    BillingAccount.objects.create(tenant=acme, spend_limit=Decimal("5.00"))
    start, raised = threading.Barrier(4), []

    def check():
        start.wait()
        try:
            raised.extend(spend_alerts_check(tenant=acme))
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.threshold for a in raised) == [50, 80, 100]
    assert SpendAlert.objects.for_tenant(acme).count() == 3


def test_no_limit_no_alerts(acme, priced, mailoutbox):
    assert spend_alerts_check(tenant=acme) == [] and mailoutbox == []
