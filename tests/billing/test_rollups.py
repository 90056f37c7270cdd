"""Hourly usage rollups: one GROUP BY per hour over the billable events, per tenant ×
deployment × hardware × meter; rolling again gives the same rows; an event at 23:59:59.999
and one at 00:00:00.000 land in their own hours; a late event re-rolls its hour on the next
refresh; the check finds any difference to the unit."""
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import UsageEvent, UsageRollup
from billing.rollups import usage_rollup_hour, usage_rollups_check, usage_rollups_refresh
from workers.models import Deployment

pytestmark = pytest.mark.django_db

MIDNIGHT = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def deployments(acme, digits_onnx):
    from graph_editor.services import model_version_upload

    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    cpu = Deployment.unscoped.create(tenant=acme, name="digits", model_version=version, hardware="cpu")
    gpu = Deployment.unscoped.create(tenant=acme, name="digits-gpu", model_version=version, hardware="gpu")
    return cpu, gpu


def event(tenant, at: datetime, *, deployment=None, compute_ms=1.25, status=200, endpoint="infer"):
    return UsageEvent.unscoped.create(
        tenant=tenant, request_id=uuid.uuid4(), deployment=deployment,
        deployment_name=deployment.name if deployment else "gone", status=status, endpoint=endpoint,
        latency_ms=3, upstream_ms=compute_ms, compute_ms=compute_ms, occurred_at=at)


def rows(hour: datetime) -> list[tuple]:
    return sorted((r.tenant_id, r.deployment_name, r.hardware, r.meter, r.quantity, r.events)
                  for r in UsageRollup.unscoped.filter(hour=hour))


def test_an_hour_rolls_into_one_row_per_deployment_hardware_and_meter(acme, globex, deployments):
    cpu, gpu = deployments
    hour = MIDNIGHT - timedelta(hours=1)  # 23:00 on the 29th
    for minutes, deployment, compute in [(1, cpu, 1.5), (30, cpu, 2.25), (59, gpu, 10.0)]:
        event(acme, hour + timedelta(minutes=minutes), deployment=deployment, compute_ms=compute)
    event(acme, hour + timedelta(minutes=5), deployment=cpu, status=429)  # refused: not billable
    event(acme, hour + timedelta(minutes=6), deployment=cpu, endpoint="ready")  # not an inference
    event(globex, hour + timedelta(minutes=7), compute_ms=0.333333333)  # its deployment row is gone: cpu

    assert usage_rollup_hour(hour=hour + timedelta(minutes=42)) == 6
    want = [
        (acme.pk, "digits", "cpu", "compute_ms", Decimal("3.750000"), 2),
        (acme.pk, "digits", "cpu", "requests", Decimal("2.000000"), 2),
        (acme.pk, "digits-gpu", "gpu", "compute_ms", Decimal("10.000000"), 1),
        (acme.pk, "digits-gpu", "gpu", "requests", Decimal("1.000000"), 1),
        (globex.pk, "gone", "cpu", "compute_ms", Decimal("0.333333"), 1),
        (globex.pk, "gone", "cpu", "requests", Decimal("1.000000"), 1),
    ]
    assert rows(hour) == sorted(want)
    ids = list(UsageRollup.unscoped.values_list("pk", flat=True))
    assert usage_rollup_hour(hour=hour) == 6 and rows(hour) == sorted(want)  # rolled again: the same rows
    assert not set(ids) & set(UsageRollup.unscoped.values_list("pk", flat=True))  # rebuilt, not appended
    assert usage_rollups_check(start=hour, end=MIDNIGHT) == []


def test_the_last_and_the_first_millisecond_of_a_day_land_in_their_own_hours(acme, deployments):
    cpu, _ = deployments
    event(acme, MIDNIGHT - timedelta(milliseconds=1), deployment=cpu, compute_ms=1)  # 23:59:59.999
    event(acme, MIDNIGHT, deployment=cpu, compute_ms=2)  # 00:00:00.000
    usage_rollup_hour(hour=MIDNIGHT - timedelta(hours=1))
    usage_rollup_hour(hour=MIDNIGHT)
    compute = dict(UsageRollup.unscoped.filter(meter="compute_ms").values_list("hour", "quantity"))
    assert compute == {MIDNIGHT - timedelta(hours=1): Decimal(1), MIDNIGHT: Decimal(2)}


def test_a_late_event_rolls_its_hour_again_on_the_next_refresh(acme, deployments):
    cpu, _ = deployments
    now = datetime.now(UTC)
    hour = (now - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    event(acme, hour + timedelta(minutes=10), deployment=cpu)
    rolled = usage_rollups_refresh(now=now)
    assert hour in rolled and now.replace(minute=0, second=0, microsecond=0) in rolled
    assert rows(hour)[1][4] == Decimal(1)

    event(acme, hour + timedelta(minutes=20), deployment=cpu)  # arrives late, hours after its hour
    assert usage_rollups_check(start=hour, end=hour + timedelta(hours=1)) == [
        f"tenant {acme.pk} compute_ms: events 2.500000, rollups 1.250000",
        f"tenant {acme.pk} requests: events 2, rollups 1.000000"]
    assert hour in usage_rollups_refresh(now=now)
    assert rows(hour)[1][4:] == (Decimal(2), 2)
    assert usage_rollups_check(start=hour, end=hour + timedelta(hours=1)) == []


def test_the_check_reports_a_rollup_without_events(acme, deployments):
    cpu, _ = deployments
    event(acme, MIDNIGHT + timedelta(minutes=1), deployment=cpu)
    usage_rollup_hour(hour=MIDNIGHT)
    UsageEvent.unscoped.all().delete()
    assert usage_rollups_check(start=MIDNIGHT, end=MIDNIGHT + timedelta(hours=1)) == [
        f"tenant {acme.pk} compute_ms: events 0, rollups 1.250000",
        f"tenant {acme.pk} requests: events 0, rollups 1.000000"]
