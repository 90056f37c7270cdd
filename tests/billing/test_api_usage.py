"""Usage through the REST API: recent requests, totals, and the per-minute series the
portal's chart draws."""
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from django.utils import timezone

from tests.api_helpers import key_client, owner_client, usage_event_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(acme, globex):
    """Acme: three digits requests (one failed) and one iris request in the last few
    minutes, one digits request two hours ago. Globex: one request."""
    made = {
        "digits-now": usage_event_create(acme, minutes_ago=0),
        "digits-1m": usage_event_create(acme, minutes_ago=1, status=503),
        "iris-5m": usage_event_create(acme, deployment_name="iris", minutes_ago=5, bytes_in=100),
        "digits-6m": usage_event_create(acme, minutes_ago=6),
        "digits-2h": usage_event_create(acme, minutes_ago=120),
    }
    usage_event_create(globex, deployment_name="digits")
    return made


@pytest.mark.parametrize("auth", ["key", "session"])
def test_recent_requests_newest_first_paginated_and_filtered(acme, alice, events, auth):
    client = owner_client(auth, acme, alice)
    body = client.get("/api/v1/usage").json()
    assert body["count"] == 5 and body["next"] is None
    assert [e["request_id"] for e in body["results"]] == [
        str(events[k].request_id) for k in ("digits-now", "digits-1m", "iris-5m", "digits-6m", "digits-2h")]
    first = body["results"][0]
    assert first["deployment_name"] == "digits" and first["status"] == 200 and first["latency_ms"] == 2.5
    assert (first["bytes_in"], first["bytes_out"]) == (10, 20)

    page = client.get("/api/v1/usage?limit=2&offset=2").json()
    assert page["count"] == 5 and [e["deployment_name"] for e in page["results"]] == ["iris", "digits"]
    assert "offset=4" in page["next"]

    iris = client.get("/api/v1/usage?deployment=iris").json()
    assert iris["count"] == 1 and iris["results"][0]["bytes_in"] == 100
    assert client.get("/api/v1/usage?deployment=unknown").json()["count"] == 0


def test_a_request_shows_the_prefix_of_the_key_that_made_it(acme):
    from tenants.services import api_key_create

    api_key, _ = api_key_create(tenant=acme, label="client", scopes=["infer"])
    usage_event_create(acme, api_key=api_key)
    [event] = key_client(acme).get("/api/v1/usage").json()["results"]
    assert (event["api_key"], event["key_prefix"]) == (api_key.pk, api_key.prefix)


@pytest.mark.parametrize("auth", ["key", "session"])
def test_summary_totals_the_tenants_requests(acme, alice, events, auth):
    summary = owner_client(auth, acme, alice).get("/api/v1/usage/summary").json()
    assert summary["total_requests"] == 5 and summary["errors"] == 1
    assert (summary["bytes_in"], summary["bytes_out"]) == (140, 100)
    assert summary["avg_latency_ms"] == 2.5
    assert summary["by_deployment"] == [
        {"deployment_name": "digits", "requests": 4, "errors": 1, "avg_latency_ms": 2.5},
        {"deployment_name": "iris", "requests": 1, "errors": 0, "avg_latency_ms": 2.5},
    ]


def test_summary_of_a_tenant_without_usage_is_zeros(acme):
    summary = key_client(acme).get("/api/v1/usage/summary").json()
    assert summary == {"total_requests": 0, "errors": 0, "bytes_in": 0, "bytes_out": 0, "avg_latency_ms": None,
                       "by_deployment": []}


def minute_of(when: datetime) -> str:
    return when.replace(second=0, microsecond=0).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("auth", ["key", "session"])
def test_timeseries_has_one_point_per_minute_with_zeros_between_requests(acme, alice, events, auth):
    before = timezone.now()
    points = owner_client(auth, acme, alice).get("/api/v1/usage/timeseries?minutes=60").json()
    assert len(points) == 60
    minutes = [datetime.fromisoformat(p["minute"]) for p in points]
    assert all(later - earlier == timedelta(minutes=1) for earlier, later in pairwise(minutes))
    assert minutes[-1] >= before.replace(second=0, microsecond=0)
    by_minute = {p["minute"]: (p["requests"], p["errors"]) for p in points}
    assert by_minute[minute_of(events["digits-now"].occurred_at)] == (1, 0)
    assert by_minute[minute_of(events["digits-1m"].occurred_at)] == (1, 1)
    assert by_minute[minute_of(events["iris-5m"].occurred_at)] == (1, 0)
    # The request two hours ago is outside the window; every other minute is a zero.
    assert sum(p["requests"] for p in points) == 4
    assert sum(1 for p in points if p["requests"] == 0) == 56


def test_timeseries_defaults_to_the_last_hour_and_narrows_to_the_window(acme, events):
    client = key_client(acme)
    assert len(client.get("/api/v1/usage/timeseries").json()) == 60
    points = client.get("/api/v1/usage/timeseries?minutes=3").json()
    assert len(points) == 3 and sum(p["requests"] for p in points) == 2
    assert len(client.get("/api/v1/usage/timeseries?minutes=1440").json()) == 1440


@pytest.mark.parametrize(
    "minutes, message",
    [
        ("0", "minutes: Ensure this value is greater than or equal to 1."),
        ("1441", "minutes: Ensure this value is less than or equal to 1440."),
        ("an-hour", "minutes: A valid integer is required."),
    ],
)
def test_timeseries_refuses_a_bad_window(acme, minutes, message):
    response = key_client(acme).get(f"/api/v1/usage/timeseries?minutes={minutes}")
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid_request", "message": message}}
