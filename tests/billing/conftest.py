import pytest

from tests.billing.fake_stripe import FakeStripe


@pytest.fixture
def fake_stripe(settings):
    """A fake Stripe server the SDK is pointed at, with its key and webhook secret set."""
    server = FakeStripe().start()
    settings.STRIPE_API_KEY = server.api_key
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_METER_EVENTS_API_BASE = server.url
    settings.STRIPE_WEBHOOK_SECRET = server.webhook_secret
    settings.STRIPE_BACKOFF_BASE_S = 0.01
    yield server
    server.stop()
