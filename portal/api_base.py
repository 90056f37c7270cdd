"""What every tenant-scoped REST view shares: the tenant the request acts for."""
from rest_framework.views import APIView

from tenants.permissions import request_tenant


class TenantAPIView(APIView):
    @property
    def tenant(self):
        return request_tenant(self.request)

    @property
    def actor(self):
        user = self.request.user
        return user if user.is_authenticated else None
