"""Stripe's webhook endpoint, POST /stripe/webhook: a plain Django view, since Stripe signs
the raw body and nothing may parse it first. The signature (Stripe-Signature, checked with
STRIPE_WEBHOOK_SECRET within Stripe's 5-minute tolerance) is verified by the SDK's
`stripe.Webhook.construct_event`; a verified event is handled once
(billing.stripe_sync.events)."""
import json

import stripe
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from billing.stripe_sync import stripe_enabled, stripe_event_handle


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@csrf_exempt
def stripe_webhook(request):
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "Stripe webhooks are delivered by POST.")
        response["Allow"] = "POST"
        return response
    if not stripe_enabled() or not settings.STRIPE_WEBHOOK_SECRET:
        return _error(404, "stripe_disabled", "Stripe is not set up on this platform (no API key or webhook secret).")
    try:
        stripe.Webhook.construct_event(request.body, request.headers.get("Stripe-Signature"),
                                       settings.STRIPE_WEBHOOK_SECRET)
        event = json.loads(request.body)
    except stripe.SignatureVerificationError as exc:
        return _error(400, "invalid_signature",
                      f"The Stripe-Signature header does not verify this body with the webhook secret: {exc}")
    except (ValueError, TypeError, KeyError, AttributeError):
        return _error(400, "invalid_payload", "The body is not a Stripe event in JSON (UTF-8).")
    if not (isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("type"), str)
            and isinstance(event.get("created"), int) and isinstance(event.get("data"), dict)):
        return _error(400, "invalid_payload", "A Stripe event has an id, a type, a created time and data.")
    handled = stripe_event_handle(event=event)
    return JsonResponse({"received": True, "replayed": not handled})
