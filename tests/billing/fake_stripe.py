"""A fake Stripe for the tests: a real HTTP server on 127.0.0.1, in a thread, that the
official SDK is pointed at (STRIPE_API_BASE, STRIPE_METER_EVENTS_API_BASE).

It keeps state for customers, prices (and the products made with them), meters, meter
events, subscriptions, invoice items, invoices and meter event summaries, and it checks
what Stripe checks and what our code must get right:
- `Authorization: Bearer <its key>` on every request, or 401;
- v1 POST bodies form-encoded (v2 JSON), or 400;
- an `Idempotency-Key` on every POST, with Stripe's semantics: the same key with the same
  parameters replays the first (successful) answer, with other parameters it is a 400
  idempotency_error; answers that did not execute (validation errors, 429) are not kept;
- a meter event identifier seen before is a 400 "An event already exists with identifier";
  a timestamp more than 35 days back (or 5 minutes ahead) is a 400;
- it answers 429 to the next N requests when told to (`rate_limit`);
- it can stall once after N meter events, holding the next one's answer (kept) until
  released, so a test can kill its caller mid-call (`stall_meter_events_after`);
- it records every request (`requests`), and signs webhooks as Stripe does:
  `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>`."""
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

TIMESTAMP_WINDOW_S = 35 * 24 * 3600
FUTURE_WINDOW_S = 5 * 60


class Answer(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status, self.body = status, body


def invalid(message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> Answer:
    error = {"type": "invalid_request_error", "message": message}
    if param:
        error["param"] = param
    if code:
        error["code"] = code
    return Answer(status, {"error": error})


def form_decode(body: str) -> dict:
    """Stripe's form encoding (a[b][0][c]=v) back into nested dicts and lists."""
    root: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body)):
        name, _, rest = key.partition("[")
        parts = [name] + ([p for p in rest.rstrip("]").split("][")] if rest else [])
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(root)


def _lists(node):
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    params: dict
    status: int = 0
    replayed: bool = False

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class FakeStripe:
    api_key: str = field(default_factory=lambda: f"sk_test_{secrets.token_hex(12)}")
    webhook_secret: str = field(default_factory=lambda: f"whsec_{secrets.token_hex(16)}")

    def __post_init__(self):
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self.customers: dict[str, dict] = {}
        self.products: dict[str, dict] = {}
        self.prices: dict[str, dict] = {}
        self.meters: dict[str, dict] = {}
        self.meter_events: list[dict] = []
        self.subscriptions: dict[str, dict] = {}
        self.invoice_items: dict[str, dict] = {}
        self.invoices: dict[str, dict] = {}
        self.idempotent: dict[str, tuple] = {}
        self._ids = itertools.count(1)
        self._rate_limited = 0
        self._rate_limit_prefix = ""
        self._stall_after: int | None = None
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.server: ThreadingHTTPServer | None = None

    # ---- running ------------------------------------------------------------------------

    def start(self) -> "FakeStripe":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._serve(self, "GET")

            def do_POST(self):
                fake._serve(self, "POST")

            def do_DELETE(self):
                fake._serve(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # ---- what a test tells it -----------------------------------------------------------

    def rate_limit(self, times: int, *, path_prefix: str = "") -> None:
        """Answer 429 to the next `times` requests (whose path starts with `path_prefix`)."""
        with self.lock:
            self._rate_limited, self._rate_limit_prefix = times, path_prefix

    def stall_meter_events_after(self, accepted: int) -> None:
        """Keep the meter event after `accepted` more, but hold its answer until `release`."""
        with self.lock:
            self._stall_after = len(self.meter_events) + accepted

    def meter_event_plant(self, *, event_name: str, customer: str, value, timestamp: int) -> None:
        """An event Stripe holds that the platform did not send (a reconciliation test)."""
        with self.lock:
            self.meter_events.append({"event_name": event_name, "identifier": f"planted-{next(self._ids)}",
                                      "customer": customer, "value": Decimal(str(value)), "timestamp": timestamp})

    def invoice_create(self, *, customer: str, period_start: int, period_end: int, amount_due: int = 0) -> dict:
        with self.lock:
            invoice = {"id": self._id("in"), "object": "invoice", "customer": customer, "status": "open",
                       "period_start": period_start, "period_end": period_end, "amount_due": amount_due,
                       "currency": "usd", "livemode": False}
            self.invoices[invoice["id"]] = invoice
            return invoice

    # ---- what a test reads --------------------------------------------------------------

    def posts(self, path_prefix: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST" and r.path.startswith(path_prefix)]

    def identifiers(self) -> list[str]:
        with self.lock:
            return [event["identifier"] for event in self.meter_events]

    def meter_totals(self) -> dict[tuple[str, str], Decimal]:
        """Sum of meter event values per (customer, event name)."""
        totals: dict[tuple[str, str], Decimal] = {}
        with self.lock:
            for event in self.meter_events:
                key = (event["customer"], event["event_name"])
                totals[key] = totals.get(key, Decimal(0)) + event["value"]
        return totals

    # ---- webhooks -----------------------------------------------------------------------

    def event(self, type_: str, obj: dict, *, event_id: str | None = None, created: int | None = None) -> dict:
        return {"id": event_id or self._id("evt"), "object": "event", "api_version": "2026-10-28.endive",
                "created": created or int(time.time()), "type": type_, "livemode": False, "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None}, "data": {"object": obj}}

    def sign(self, body: str, *, secret: str | None = None, timestamp: int | None = None) -> str:
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = hmac.new((secret or self.webhook_secret).encode(), f"{timestamp}.{body}".encode(),
                             hashlib.sha256).hexdigest()
        return f"t={timestamp},v1={signature}"

    def webhook_send(self, url: str, event: dict | str, *, secret: str | None = None,
                     timestamp: int | None = None, signature: str | None = None) -> tuple[int, dict]:
        """POST an event to `url` as Stripe does; (status, JSON answer)."""
        body = event if isinstance(event, str) else json.dumps(event)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Stripe-Signature": signature if signature is not None else self.sign(body, secret=secret,
                                                                                         timestamp=timestamp)}
        request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    # ---- serving ------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8", "replace") if length else ""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = Request(method=method, path=url.path, query=form_decode(url.query), headers=headers, params={})
        stall = False
        try:
            with self.lock:
                self.requests.append(request)
                status, body, stall = self._answer(request, raw)
        except Answer as answer:
            status, body = answer.status, answer.body
        request.status = status
        if stall:  # the event is kept; its answer waits, as if the network had stalled
            self.stalled.set()
            self.release.wait(timeout=30)
        payload = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.send_header("Request-Id", f"req_fake{id(request)}")
            if request.replayed:
                handler.send_header("Idempotent-Replayed", "true")
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the caller is gone (killed mid-call)

    def _answer(self, request: Request, raw: str) -> tuple[int, dict, bool]:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise invalid("Invalid API Key provided.", status=401)
        if self._rate_limited and request.path.startswith(self._rate_limit_prefix):
            self._rate_limited -= 1
            raise invalid("Request rate limit exceeded. Learn more about rate limits here "
                          "https://stripe.com/docs/rate-limits.", code="rate_limit", status=429)
        if request.method != "POST":
            return 200, self._route(request), False
        content_type = request.headers.get("content-type", "")
        v2 = request.path.startswith("/v2/")
        wanted = "application/json" if v2 else "application/x-www-form-urlencoded"
        if not content_type.startswith(wanted):
            raise invalid(f"Requests to {request.path} must be {wanted}, not {content_type or 'nothing'}.")
        try:
            request.params = json.loads(raw or "{}") if v2 else form_decode(raw)
        except ValueError:
            raise invalid("The body could not be decoded.") from None
        key = request.idempotency_key
        if not key:
            raise invalid("This fake Stripe requires an Idempotency-Key on every POST.")
        fingerprint = (request.path, request.params)
        if key in self.idempotent:
            first, status, body = self.idempotent[key]
            if first != fingerprint:
                raise Answer(400, {"error": {"type": "idempotency_error", "message": (
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key}' if you meant to execute a different request.")}})
            request.replayed = True
            return status, body, False
        body = self._route(request)
        self.idempotent[key] = (fingerprint, 200, body)
        stall = False
        if request.path == "/v1/billing/meter_events" and self._stall_after is not None \
                and len(self.meter_events) > self._stall_after:
            self._stall_after, stall = None, True
        return 200, body, stall

    def _route(self, request: Request) -> dict:
        parts = request.path.strip("/").split("/")
        p, m = request.params, request.method
        match parts:
            case ["v1", "customers"] if m == "POST":
                return self._store(self.customers, "cus", {"object": "customer", "name": p.get("name"),
                                                           "email": p.get("email"), "metadata": p.get("metadata", {})})
            case ["v1", "customers", cid] if m == "GET":
                return self._get(self.customers, cid, "customer")
            case ["v1", "billing", "meters"] if m == "GET":
                status = request.query.get("status")
                return self._list([x for x in self.meters.values() if status in (None, x["status"])], request.path)
            case ["v1", "billing", "meters"] if m == "POST":
                return self._meter_create(p)
            case ["v1", "billing", "meters", mid, "event_summaries"] if m == "GET":
                return self._summaries(mid, request.query, request.path)
            case ["v1", "billing", "meter_events"] if m == "POST":
                return self._meter_event(p)
            case ["v1", "prices"] if m == "POST":
                return self._price_create(p)
            case ["v1", "prices", pid] if m == "GET":
                return self._get(self.prices, pid, "price")
            case ["v1", "subscriptions"] if m == "POST":
                return self._subscription_create(p)
            case ["v1", "subscriptions", sid] if m == "POST":
                return self._subscription_update(self._get(self.subscriptions, sid, "subscription"), p)
            case ["v1", "subscriptions", sid] if m == "GET":
                return self._get(self.subscriptions, sid, "subscription")
            case ["v1", "invoiceitems"] if m == "POST":
                return self._invoice_item(p)
            case ["v1", "invoices", iid] if m == "GET":
                return self._get(self.invoices, iid, "invoice")
        raise invalid(f"Unrecognized request URL ({request.method}: {request.path}).", status=404)

    def _store(self, table: dict, prefix: str, obj: dict) -> dict:
        obj = {"id": self._id(prefix), "created": int(time.time()), "livemode": False, **obj}
        table[obj["id"]] = obj
        return obj

    def _get(self, table: dict, object_id: str, what: str) -> dict:
        if object_id not in table:
            raise invalid(f"No such {what}: '{object_id}'", param="id", code="resource_missing", status=404)
        return table[object_id]

    def _list(self, items: list, url: str) -> dict:
        return {"object": "list", "data": items, "has_more": False, "url": url}

    def _meter_create(self, p: dict) -> dict:
        for name in ("display_name", "event_name"):
            if not p.get(name):
                raise invalid(f"Missing required param: {name}.", param=name)
        if (p.get("default_aggregation") or {}).get("formula") not in ("sum", "count", "last"):
            raise invalid("default_aggregation[formula] must be one of sum, count or last.",
                          param="default_aggregation[formula]")
        if any(x["event_name"] == p["event_name"] and x["status"] == "active" for x in self.meters.values()):
            raise invalid(f"An active meter with event_name `{p['event_name']}` already exists.", param="event_name")
        return self._store(self.meters, "mtr", {
            "object": "billing.meter", "status": "active", "display_name": p["display_name"],
            "event_name": p["event_name"], "default_aggregation": p["default_aggregation"],
            "customer_mapping": p.get("customer_mapping") or {"type": "by_id",
                                                              "event_payload_key": "stripe_customer_id"},
            "value_settings": p.get("value_settings") or {"event_payload_key": "value"}})

    def _meter_event(self, p: dict) -> dict:
        meter = next((x for x in self.meters.values() if x["event_name"] == p.get("event_name")
                      and x["status"] == "active"), None)
        if meter is None:
            raise invalid(f"No active meter was found matching event_name `{p.get('event_name')}`.",
                          param="event_name")
        identifier = p.get("identifier") or self._id("mevt")
        if any(event["identifier"] == identifier for event in self.meter_events):
            raise invalid(f"An event already exists with identifier {identifier}.", param="identifier")
        now = int(time.time())
        timestamp = int(p.get("timestamp") or now)
        if timestamp < now - TIMESTAMP_WINDOW_S:
            raise invalid("Timestamp must be within the past 35 calendar days.", param="timestamp")
        if timestamp > now + FUTURE_WINDOW_S:
            raise invalid("Timestamp must not be more than 5 minutes in the future.", param="timestamp")
        payload = p.get("payload") or {}
        customer = payload.get(meter["customer_mapping"]["event_payload_key"])
        if customer not in self.customers:
            raise invalid(f"No such customer: '{customer}'", param="payload[stripe_customer_id]")
        try:
            value = Decimal(payload.get(meter["value_settings"]["event_payload_key"]))
        except (InvalidOperation, TypeError):
            raise invalid("The value in the event payload must be a number.", param="payload[value]") from None
        if not value.is_finite() or len(value.normalize().as_tuple().digits) > 15:
            raise invalid(f"The value in the event payload can have at most 15 digits. Received {value}.",
                          param="payload[value]")
        self.meter_events.append({"event_name": meter["event_name"], "identifier": identifier, "customer": customer,
                                  "value": value, "timestamp": timestamp})
        return {"object": "billing.meter_event", "created": now, "event_name": meter["event_name"],
                "identifier": identifier, "livemode": False, "payload": payload, "timestamp": timestamp}

    def _summaries(self, meter_id: str, q: dict, url: str) -> dict:
        meter = self._get(self.meters, meter_id, "billing.meter")
        for name in ("customer", "start_time", "end_time"):
            if not q.get(name):
                raise invalid(f"Missing required param: {name}.", param=name)
        start, end = int(q["start_time"]), int(q["end_time"])
        if start % 60 or end % 60:
            raise invalid("start_time and end_time must be aligned with minute boundaries.", param="start_time")
        total = sum((e["value"] for e in self.meter_events if e["event_name"] == meter["event_name"]
                     and e["customer"] == q["customer"] and start <= e["timestamp"] < end), Decimal(0))
        return self._list([{"id": self._id("mtrusg"), "object": "billing.meter_event_summary",
                            "aggregated_value": float(total), "start_time": start, "end_time": end,
                            "meter": meter_id, "livemode": False}], url)

    def _price_create(self, p: dict) -> dict:
        if not p.get("currency"):
            raise invalid("Missing required param: currency.", param="currency")
        recurring = p.get("recurring") or {}
        if recurring.get("usage_type") == "metered" and recurring.get("meter") not in self.meters:
            raise invalid("A metered price needs recurring[meter], an existing meter.", param="recurring[meter]")
        amounts = []
        if p.get("billing_scheme") == "tiered":
            tiers = p.get("tiers")
            if not isinstance(tiers, list) or not tiers or p.get("tiers_mode") not in ("graduated", "volume"):
                raise invalid("A tiered price needs tiers and tiers_mode.", param="tiers")
            previous = 0
            for index, tier in enumerate(tiers):
                up_to = tier.get("up_to")
                if up_to == "inf":
                    if index != len(tiers) - 1:
                        raise invalid("Only the last tier may have up_to=inf.", param=f"tiers[{index}][up_to]")
                elif not str(up_to).isdigit() or int(up_to) <= previous:
                    raise invalid("Tier up_to must be positive integers, increasing.", param=f"tiers[{index}][up_to]")
                else:
                    previous = int(up_to)
                amounts.append(tier.get("unit_amount_decimal", "0"))
            if tiers[-1].get("up_to") != "inf":
                raise invalid("The last tier must have up_to=inf.", param="tiers")
        else:
            amounts.append(p.get("unit_amount_decimal") or p.get("unit_amount"))
        for amount in amounts:
            try:
                number = Decimal(amount)
            except (InvalidOperation, TypeError):
                raise invalid(f"Invalid decimal: {amount}.", param="unit_amount_decimal") from None
            if number.as_tuple().exponent < -12:
                raise invalid("unit_amount_decimal can have at most 12 decimal places.", param="unit_amount_decimal")
        product = p.get("product")
        if product is None:
            product = self._store(self.products, "prod", {"object": "product", **(p.get("product_data") or {})})["id"]
        fields = {k: v for k, v in p.items() if k != "product_data"}
        return self._store(self.prices, "price", {"object": "price", **fields, "product": product})

    def _items(self, subscription_id: str, items: list) -> list[dict]:
        made = []
        for item in items:
            price = self._get(self.prices, item.get("price"), "price")
            made.append({"id": self._id("si"), "object": "subscription_item", "price": price,
                         "quantity": int(item["quantity"]) if item.get("quantity") else None,
                         "subscription": subscription_id})
        return made

    def _subscription_create(self, p: dict) -> dict:
        self._get(self.customers, p.get("customer"), "customer")
        items = p.get("items")
        if not isinstance(items, list) or not items:
            raise invalid("Missing required param: items.", param="items")
        subscription = self._store(self.subscriptions, "sub", {"object": "subscription", "customer": p["customer"],
                                                               "status": "active", "metadata": p.get("metadata", {})})
        subscription["items"] = self._list(self._items(subscription["id"], items), "/v1/subscription_items")
        return subscription

    def _subscription_update(self, subscription: dict, p: dict) -> dict:
        held = {item["id"]: item for item in subscription["items"]["data"]}
        for change in p.get("items") or []:
            if change.get("id"):
                item = self._get(held, change["id"], "subscription item")
                if change.get("deleted") == "true":
                    del held[item["id"]]
                elif change.get("price"):
                    item["price"] = self._get(self.prices, change["price"], "price")
            else:
                for item in self._items(subscription["id"], [change]):
                    held[item["id"]] = item
        subscription["items"]["data"] = list(held.values())
        subscription["metadata"] = {**subscription.get("metadata", {}), **(p.get("metadata") or {})}
        return subscription

    def _invoice_item(self, p: dict) -> dict:
        self._get(self.customers, p.get("customer"), "customer")
        if not p.get("currency"):
            raise invalid("Missing required param: currency.", param="currency")
        try:
            amount = int(p.get("amount"))
        except (TypeError, ValueError):
            raise invalid("amount must be an integer in the currency's smallest unit.", param="amount") from None
        return self._store(self.invoice_items, "ii", {
            "object": "invoiceitem", "customer": p["customer"], "amount": amount, "currency": p["currency"],
            "description": p.get("description"), "period": p.get("period"), "metadata": p.get("metadata", {})})
