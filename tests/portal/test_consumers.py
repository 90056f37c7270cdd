import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from portal.events import deployment_event_send
from portal.routing import websocket_urlpatterns
from workers.models import Deployment, DeploymentState

application = URLRouter(websocket_urlpatterns)


def communicator(user, tenant_id):
    comm = WebsocketCommunicator(application, f"/ws/tenants/{tenant_id}/deployments/")
    comm.scope["user"] = user
    return comm


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_owner_receives_state_changes_and_others_are_refused(acme, alice, bob, digits_onnx):
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import AnonymousUser

    from graph_editor.services import model_version_upload

    anonymous = communicator(AnonymousUser(), acme.pk)
    assert (await anonymous.connect())[0] is False
    stranger = communicator(bob, acme.pk)
    assert (await stranger.connect())[0] is False

    owner = communicator(alice, acme.pk)
    assert (await owner.connect())[0] is True
    version = await sync_to_async(model_version_upload)(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = await sync_to_async(Deployment.unscoped.create)(
        tenant=acme, name="digits", model_version=version, state=DeploymentState.READY, load_seconds=1.25)
    await sync_to_async(deployment_event_send)(deployment)
    event = await owner.receive_json_from(timeout=5)
    assert (event["id"], event["state"], event["load_seconds"]) == (deployment.pk, "ready", 1.25)
    await owner.disconnect()
