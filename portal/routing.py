from django.urls import path

from portal.consumers import DeploymentConsumer

websocket_urlpatterns = [
    path("ws/tenants/<int:tenant_id>/deployments/", DeploymentConsumer.as_asgi()),
]
