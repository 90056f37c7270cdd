from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tenants.middleware import SESSION_TENANT_KEY
from tenants.selectors import membership_for
from workers.events import deployment_payload, tenant_group
from workers.selectors import deployment_list

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_A_MEMBER = 4403


class DeploymentConsumer(AsyncJsonWebsocketConsumer):
    """Pushes the deployment states of one tenant to a signed-in member of it.

    The tenant is the one the page was rendered for (`?tenant=<id>`), else the session's
    current tenant; the socket joins the tenant's group only after the membership check."""

    group = None

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        membership = await database_sync_to_async(self._membership)(user)
        if membership is None:
            await self.close(code=CLOSE_NOT_A_MEMBER)
            return
        self.group = tenant_group(membership.tenant_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # States that changed between rendering the page and opening this socket.
        for payload in await database_sync_to_async(self._snapshot)(membership.tenant):
            await self.send_json(payload)

    def _membership(self, user):
        """A tenant named in the query must be one of the user's; without one, the session's
        current tenant applies, as for pages (falling back to the user's first tenant)."""
        requested = parse_qs(self.scope.get("query_string", b"").decode()).get("tenant", [""])[0]
        if requested:
            return membership_for(user=user, tenant_id=int(requested)) if requested.isdigit() else None
        session = self.scope.get("session")
        current = session.get(SESSION_TENANT_KEY) if session is not None else None
        return membership_for(user=user, tenant_id=current) or membership_for(user=user)

    @staticmethod
    def _snapshot(tenant) -> list[dict]:
        return [deployment_payload(d) for d in deployment_list(tenant=tenant)]

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """The socket is push-only; anything a client sends is ignored."""

    async def deployment_changed(self, event):
        await self.send_json(event["deployment"])
