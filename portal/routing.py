from django.urls import path

from portal.consumers import DeploymentConsumer

websocket_urlpatterns = [
    path("ws/deployments/", DeploymentConsumer.as_asgi()),
]
