from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"

    def ready(self) -> None:
        from tenants.quotas import receivers  # noqa: F401  (connects the signal receivers)
