from rest_framework.test import APIClient

from tenants.services import api_key_create


def key_client(tenant, scopes=("manage",)) -> APIClient:
    _, raw = api_key_create(tenant=tenant, label="api test", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client
