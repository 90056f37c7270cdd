"""The quota services themselves: a value the columns cannot hold is a PlatformError that
names the field, never a 500, and two first changes of one target both apply to its one
quota row."""
import threading

import pytest
from django.db import connection

from billing.quotas import quota_overview
from gateway.contract.errors import PlatformError
from gateway.contract.keys import limits_entry_name
from tenants.models import Plan, Quota
from tenants.quotas import quota_set, quota_set_within_tenant
from tenants.services import api_key_create
from tests.tenants.test_api_quotas import standard  # noqa: F401


def quota_target(level: str, tenant):
    if level == "key":
        return api_key_create(tenant=tenant, label="ci", scopes=["infer"])[0]
    if level == "plan":
        return Plan.objects.create(name="Pro", slug="pro")
    return tenant


def quotas_of(level: str, target):
    return Quota.objects.filter(level=level, **{{"key": "api_key"}.get(level, level): target})


@pytest.mark.django_db
@pytest.mark.parametrize("level, values, message", [
    ("tenant", {"max_instances": 2**40}, "max_instances: Ensure this value is less than or equal to 2147483647."),
    ("plan", {"monthly_requests": 2**70},
     "monthly_requests: Ensure this value is less than or equal to 9223372036854775807."),
    ("key", {"max_concurrency": 2**31}, "max_concurrency: Ensure this value is less than or equal to 2147483647."),
])
def test_a_limit_beyond_its_column_is_a_platform_error_naming_the_field(acme, level, values, message):
    target = quota_target(level, acme)
    with pytest.raises(PlatformError) as refused:
        quota_set(level=level, target=target, values=values)
    assert (refused.value.code, refused.value.message) == ("invalid_limit", message)
    assert not quotas_of(level, target).exists()


@pytest.mark.django_db
def test_a_limit_beyond_its_column_leaves_the_existing_limits_as_they_were(acme):
    quota_set(level="tenant", target=acme, values={"max_instances": 8})
    with pytest.raises(PlatformError, match="max_instances"):
        quota_set(level="tenant", target=acme, values={"max_instances": 2**40})
    assert Quota.objects.get(level="tenant", tenant=acme).max_instances == 8


@pytest.mark.django_db
def test_a_tenant_narrowing_a_key_beyond_the_column_gets_the_same_error(acme, standard):  # noqa: F811
    api_key = quota_target("key", acme)
    with pytest.raises(PlatformError, match="monthly_requests: Ensure this value is less than or equal to"):
        quota_set_within_tenant(tenant=acme, target=api_key, values={"monthly_requests": 2**70})


@pytest.mark.django_db
def test_the_overview_names_the_plan(acme, standard):  # noqa: F811
    overview = quota_overview(tenant=acme)
    assert (overview["plan"], overview["plan_name"]) == ("standard", "Standard")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("level", ["key", "tenant", "plan"])
def test_two_first_changes_of_one_target_both_succeed_on_one_row_and_the_last_wins(acme, level, monkeypatch):
    target = quota_target(level, acme)
    # Both changes find no quota row before either writes one: the race, every time.
    both_looked = threading.Barrier(2, timeout=5)
    save = Quota.save

    def save_once_both_looked(quota, *args, **kwargs):
        if quota._state.adding:
            try:
                both_looked.wait()
            except threading.BrokenBarrierError:
                pass
        return save(quota, *args, **kwargs)

    monkeypatch.setattr(Quota, "save", save_once_both_looked)
    changes = {"first": {"max_concurrency": 5, "max_payload_bytes": 1000},
               "second": {"max_concurrency": 7, "rate_per_second": 10.0}}
    returned, errors = {}, []

    def change(name):
        try:
            returned[name] = quota_set(level=level, target=target, values=changes[name])
        except Exception as exc:  # the failure the test reports
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=change, args=(name,)) for name in changes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    [quota] = quotas_of(level, target)
    assert (quota.max_payload_bytes, quota.rate_per_second) == (1000, 10.0)
    # The change that committed last locked the row the other wrote, so it saw both.
    [last] = [name for name, each in returned.items()
              if each.max_payload_bytes is not None and each.rate_per_second is not None]
    assert quota.max_concurrency == changes[last]["max_concurrency"]


@pytest.mark.django_db(transaction=True)
def test_publishing_waits_for_the_publish_lock_and_then_writes_the_latest_limits(acme):
    """Publishers are serialised by an advisory lock, so a slow one cannot overwrite a
    newer change in Redis: here another session holds the lock, the change waits for it."""
    import psycopg
    from django.conf import settings

    from tenants.directory import redis_client
    from tenants.quotas import PUBLISH_LOCK

    api_key, _ = api_key_create(tenant=acme, label="k", scopes=["infer"])
    db = settings.DATABASES["default"]
    holder = psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                             password=db["PASSWORD"] or None, dbname=db["NAME"], autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [PUBLISH_LOCK])
    done = threading.Event()

    def change():
        try:
            quota_set(level="key", target=api_key, values={"rate_per_second": 5})
        finally:
            connection.close()
            done.set()

    threading.Thread(target=change).start()
    try:
        assert not done.wait(0.5), "the change published without the lock"
        assert redis_client().hgetall(limits_entry_name(f"k:{api_key.pk}")) == {}
        assert Quota.objects.get(api_key=api_key).rate_per_second == 5  # committed, waiting to publish
    finally:
        holder.execute("SELECT pg_advisory_unlock(%s)", [PUBLISH_LOCK])
        holder.close()
    assert done.wait(5)
    assert redis_client().hgetall(limits_entry_name(f"k:{api_key.pk}")) == {"rate": "5.0"}
