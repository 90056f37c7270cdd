from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.events import tenant_group
from tenants.selectors import membership_for


class DeploymentConsumer(AsyncJsonWebsocketConsumer):
    """Pushes deployment state changes of the signed-in user's tenant."""

    async def connect(self):
        user = self.scope.get("user")
        tenant_id = self.scope["url_route"]["kwargs"]["tenant_id"]
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        membership = await database_sync_to_async(membership_for)(user=user, tenant_id=tenant_id)
        if membership is None:
            await self.close(code=4404)
            return
        self.group = tenant_group(tenant_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def deployment_changed(self, event):
        await self.send_json(event["deployment"])
