"""Warm reserved memory: min_instances writes the reservation history (on create, on a
settings change, on undeploy), the hourly roll turns it into GB-hours (overlap seconds /
3600 × MB / 1024, 6 decimals), rolling again gives the same rows, the check of events
ignores it, and rating prices it per GB-hour with no request ids behind it."""
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing.invoicing import invoice_draft_refresh, line_request_ids
from billing.models import Price, UsageRollup
from billing.rollups import usage_rollups_check
from tests.billing.rating_fixtures import event, plan_with_prices, roll
from workers.capacity import model_memory_estimate_mb
from workers.models import Deployment, DeploymentState, WarmReservation
from workers.services import deployment_create, deployment_settings_update, deployment_undeploy
from workers.services.reservations import warm_reservation_sync

pytestmark = pytest.mark.django_db

H10 = datetime(2026, 11, 3, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def version(acme, digits_onnx):
    from graph_editor.services import model_version_upload

    return model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])


def history(deployment) -> list[tuple]:
    return [(r.memory_mb, r.ended_at is None) for r in WarmReservation.unscoped.filter(deployment=deployment)]


def test_min_instances_reserves_memory_until_it_drops_or_the_deployment_goes(acme, version):
    deployment = deployment_create(tenant=acme, model_version_id=version.pk, min_instances=2, max_instances=2)
    two = model_memory_estimate_mb(size_bytes=version.size_bytes, instances=2)
    one = model_memory_estimate_mb(size_bytes=version.size_bytes, instances=1)
    assert history(deployment) == [(two, True)]
    deployment_settings_update(tenant=acme, deployment_id=deployment.pk, max_batch_size=8)  # nothing reserved changes
    assert history(deployment) == [(two, True)]
    deployment_settings_update(tenant=acme, deployment_id=deployment.pk, min_instances=0)
    assert history(deployment) == [(two, False)]
    deployment_settings_update(tenant=acme, deployment_id=deployment.pk, min_instances=1)
    assert history(deployment) == [(two, False), (one, True)]
    deployment_undeploy(tenant=acme, deployment_id=deployment.pk)
    assert history(deployment) == [(two, False), (one, False)]
    cold = deployment_create(tenant=acme, model_version_id=version.pk, name="scales-to-zero")
    assert history(cold) == []


def test_reserved_gb_hours_roll_up_and_are_priced(acme, version):
    acme.plan = plan_with_prices()
    acme.save(update_fields=["plan"])
    Price.objects.create(version=acme.plan.price_versions.get(), component="reserved_memory",
                         tiers=[{"up_to": None, "unit_price": "0.02"}])
    warm = Deployment.unscoped.create(tenant=acme, name="warm", model_version=version, min_instances=1,
                                      memory_mb=2048, state=DeploymentState.READY)
    warm_reservation_sync(deployment=warm, now=H10 + timedelta(minutes=15))
    warm.replicas = 2
    warm_reservation_sync(deployment=warm, now=H10 + timedelta(minutes=90))  # 11:30: two replicas
    warm.state = DeploymentState.UNDEPLOYED
    warm_reservation_sync(deployment=warm, now=H10 + timedelta(hours=2))
    brief = Deployment.unscoped.create(tenant=acme, name="brief", model_version=version, min_instances=1,
                                       memory_mb=1000, state=DeploymentState.READY, hardware="gpu")
    warm_reservation_sync(deployment=brief, now=H10 + timedelta(hours=3))
    brief.min_instances = 0
    warm_reservation_sync(deployment=brief, now=H10 + timedelta(hours=3, minutes=7))
    event(acme, H10 + timedelta(minutes=1), deployment=warm)

    hours = [H10 + timedelta(hours=n) for n in range(5)]
    roll(*hours)

    def reserved():
        return sorted((r.hour, r.deployment_name, r.hardware, r.quantity, r.events)
                      for r in UsageRollup.unscoped.filter(meter="reserved_gb_h"))
    want = [
        (hours[0], "warm", "cpu", Decimal("1.500000"), 0),  # 45 min × 2 GB
        (hours[1], "warm", "cpu", Decimal("3.000000"), 0),  # 30 min × 2 GB + 30 min × 4 GB
        (hours[3], "brief", "gpu", Decimal("0.113932"), 0),  # 7/60 h × 1000/1024 GB = 0.11393229...
    ]
    assert reserved() == want
    roll(*hours)
    assert reserved() == want  # rolling again gives the same rows
    assert usage_rollups_check(start=hours[0], end=hours[-1]) == []  # the events still add up

    invoice = invoice_draft_refresh(tenant=acme, period_start=date(2026, 11, 1), now=hours[-1])
    lines = {line.deployment_name: line for line in invoice.lines.filter(component="reserved_memory")}
    assert (lines["warm"].quantity, lines["warm"].amount, lines["warm"].unit) == (Decimal("4.5"), Decimal("0.09"),
                                                                                  "GB-hour")
    assert (lines["brief"].quantity, lines["brief"].amount) == (Decimal("0.113932"), Decimal("0.00"))
    assert not line_request_ids(line=lines["warm"]).exists()
