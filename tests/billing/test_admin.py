"""The Django admin for usage events: searchable, and read-only."""
import pytest

from billing.models import UsageEvent
from tests.api_helpers import usage_event_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(acme, globex):
    return [usage_event_create(acme), usage_event_create(acme, deployment_name="iris", status=503),
            usage_event_create(globex)]


@pytest.mark.parametrize("query, count", [
    ("", 3), ("?q=iris", 1), ("?status=503", 1), ("?q=globex", 1), ("?q=no-such-deployment", 0),
])
def test_usage_is_listed_searched_and_filtered(admin_client, events, query, count):
    response = admin_client.get(f"/admin/billing/usageevent/{query}")
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == count


def test_usage_is_found_by_request_id(admin_client, events):
    response = admin_client.get(f"/admin/billing/usageevent/?q={events[1].request_id}")
    assert [e.pk for e in response.context["cl"].result_list] == [events[1].pk]


def test_usage_is_read_only(admin_client, events):
    url = f"/admin/billing/usageevent/{events[0].pk}/change/"
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"status": "200"}).status_code == 403
    assert admin_client.get("/admin/billing/usageevent/add/").status_code == 403
    assert admin_client.get(f"/admin/billing/usageevent/{events[0].pk}/delete/").status_code == 403
    assert UsageEvent.unscoped.count() == 3
