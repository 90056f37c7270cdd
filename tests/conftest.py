"""Shared fixtures: named tenants and users, and the real platform processes
(Triton, a Celery worker, the gateway, the metering consumer) for integration tests.

Tests run with portal.settings_test: Redis database 15 unless TEST_REDIS_URL says
otherwise, pytest-django's test database, scratch directories under TEST_VAR_DIR; the
processes started here are pointed at the same."""
import pytest

from tests.stack import PlatformStack


def pytest_collection_modifyitems(items):
    """Tests that use the running stack go last: once started, its metering consumer
    reads the same Redis stream that the metering unit tests drive by hand."""
    items.sort(key=lambda item: "platform_stack" in getattr(item, "fixturenames", ()))


@pytest.fixture(autouse=True)
def _clean_redis():
    from tenants.directory import redis_client

    redis_client().flushdb()
    yield


@pytest.fixture
def acme(db):
    from tenants.services import tenant_create

    return tenant_create(name="Acme Corp", slug="acme")


@pytest.fixture
def globex(db):
    from tenants.services import tenant_create

    return tenant_create(name="Globex", slug="globex")


@pytest.fixture
def alice(acme):
    """Owner of acme."""
    from tenants.models import Role
    from tenants.services import membership_add, user_create

    user = user_create(username="alice", password="alice-password-1")
    membership_add(tenant=acme, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def bob(globex):
    """Owner of globex."""
    from tenants.models import Role
    from tenants.services import membership_add, user_create

    user = user_create(username="bob", password="bob-password-1")
    membership_add(tenant=globex, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def carol(acme):
    """A read-only member of acme."""
    from tenants.models import Role
    from tenants.services import membership_add, user_create

    user = user_create(username="carol", password="carol-password-1")
    membership_add(tenant=acme, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def digits_onnx() -> bytes:
    from graph_editor.samples import digits_classifier_onnx

    return digits_classifier_onnx()


@pytest.fixture(scope="session")
def platform_stack(django_db_setup, django_db_blocker, tmp_path_factory):
    """Triton, a Celery worker, the gateway and the metering consumer, as real processes
    on free ports, sharing the test database and Redis. Started once per session."""
    stack = PlatformStack(workdir=tmp_path_factory.mktemp("stack"))
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def stack(platform_stack, transactional_db):
    """The running stack, with its Triton server registered in this test's database."""
    platform_stack.register_servers()
    yield platform_stack
    # Let the processes finish what the test started before the database is flushed,
    # or the flush and their writes deadlock.
    platform_stack.wait_quiet()
