"""Shared fixtures: named tenants and users, and the real platform processes
(Triton, a Celery worker, the gateway, the metering consumer) for integration tests.

Tests use Redis database 15 unless TEST_REDIS_URL says otherwise, and pytest-django's
test database; the processes started here are pointed at both."""
import os

os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("MODEL_STORAGE_DIR", "/tmp/inference-platform-test/models")
os.environ.setdefault("TRITON_VAR_DIR", "/tmp/inference-platform-test/triton")

import pytest  # noqa: E402

from tests.stack import PlatformStack  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_redis():
    from gateway.directory import redis_client

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
