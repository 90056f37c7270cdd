"""Live deployment states over the websocket, through the real ASGI application: session
cookie authentication, the tenant membership check, and the Redis channel layer."""
import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from portal.asgi import application
from workers.events import deployment_event_send
from workers.models import Deployment, DeploymentState
from workers.services import deployment_undeploy

EVENT_FIELDS = {"id", "name", "state", "state_label", "error", "server", "replicas", "instances", "ready_at",
                "load_seconds"}


@sync_to_async
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def socket(user=None, query: str = "") -> WebsocketCommunicator:
    headers = [(b"cookie", f"sessionid={await session_cookie(user)}".encode())] if user else []
    return WebsocketCommunicator(application, f"/ws/deployments/{query}", headers=headers)


@pytest_asyncio.fixture
async def close_db_connections():
    """Consumers query the database from a worker thread; close its connections so that
    the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who, query", [
    (None, ""),
    (None, "?tenant={acme}"),
    ("bob", "?tenant={acme}"),
    ("bob", "?tenant=abc"),
    ("alice", "?tenant={globex}"),
])
async def test_anonymous_users_and_other_tenants_are_refused(acme, globex, alice, bob, who, query,
                                                             close_db_connections):
    user = {"alice": alice, "bob": bob}.get(who)
    communicator = await socket(user, query.format(acme=acme.pk, globex=globex.pk))
    connected, _ = await communicator.connect()
    assert connected is False
    # A refused consumer keeps waiting for channel-layer messages; cancel it as a server drops the socket.
    await communicator.disconnect(timeout=0.2)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_members_get_the_current_states_then_every_change_of_their_tenant_only(
        acme, globex, alice, bob, digits_onnx, settings, tmp_path, close_db_connections):
    from graph_editor.services import model_version_upload

    settings.MODEL_STORAGE_DIR = tmp_path / "models"
    version = await sync_to_async(model_version_upload)(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = await sync_to_async(Deployment.unscoped.create)(
        tenant=acme, name="digits", model_version=version, state=DeploymentState.LOADING)

    owner = await socket(alice, f"?tenant={acme.pk}")
    assert (await owner.connect())[0] is True
    snapshot = await owner.receive_json_from(timeout=5)
    assert (snapshot["id"], snapshot["state"]) == (deployment.pk, "loading")
    # Without a tenant in the query the session's current tenant applies: bob's own.
    stranger = await socket(bob)
    assert (await stranger.connect())[0] is True

    deployment.state, deployment.load_seconds = DeploymentState.READY, 1.25
    await sync_to_async(deployment.save)()
    await sync_to_async(deployment_event_send)(deployment)
    event = await owner.receive_json_from(timeout=5)
    assert set(event) == EVENT_FIELDS
    assert (event["id"], event["name"], event["state"], event["load_seconds"]) == (deployment.pk, "digits", "ready",
                                                                                  1.25)

    # A state change made by a service reaches the page after the transaction commits.
    await sync_to_async(deployment_undeploy)(tenant=acme, deployment_id=deployment.pk)
    event = await owner.receive_json_from(timeout=5)
    assert (event["id"], event["state"], event["state_label"]) == (deployment.pk, "unloading", "Undeploying")

    assert await stranger.receive_nothing(timeout=0.5)
    await owner.disconnect()
    await stranger.disconnect()
