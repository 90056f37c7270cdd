from django.contrib import admin
from django.urls import include, path

from billing.webhooks import stripe_webhook

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("portal.api_urls")),
    path("stripe/webhook", stripe_webhook, name="stripe-webhook"),
    path("", include("portal.page_urls")),
]
