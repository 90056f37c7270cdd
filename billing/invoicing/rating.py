"""Rating a month of rollups into invoice lines (no writes). billing/invoicing/__init__.py
states the rules; this module is their arithmetic."""
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Max

from billing.models import Component, InvoiceLine, LineKind, PriceVersion, UsageRollup
from billing.pricing import (
    UNITS,
    ZERO,
    component_of,
    component_quantity,
    list_unit_price,
    money_round,
    tier_bounds,
    tiers_parse,
    version_in_force,
)
from billing.rollups import hour_up

COMPONENT_ORDER = {c.value: i for i, c in enumerate(Component)}
FREE = [(None, ZERO)]  # a component without a price in the version in force
LABELS = dict(Component.choices)


def month_start(moment) -> date:
    """The first day of the UTC calendar month holding `moment` (a datetime or a date)."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def month_next(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass
class Rates:
    """A plan's price versions, oldest first, with each version's parsed prices."""

    versions: list[PriceVersion]
    prices: dict[int, dict[str, tuple]] = field(default_factory=dict)  # version id -> component -> (allowance, tiers)
    _bounds: dict = field(default_factory=dict)

    @classmethod
    def of_plan(cls, plan_id: int | None) -> "Rates":
        if plan_id is None:
            return cls(versions=[])
        versions = list(PriceVersion.objects.filter(plan_id=plan_id).order_by("effective_from")
                        .prefetch_related("prices"))
        rates = cls(versions=versions)
        for version in versions:
            rates.prices[version.pk] = {p.component: (p.free_allowance, tiers_parse(p.tiers))
                                        for p in version.prices.all()}
        return rates

    def bounds(self, version_id: int | None) -> dict[str, list[tuple]]:
        """Per component of a version: [(upper position in the month or None, unit price)],
        the allowance first at 0: `pricing.graduated`'s bounds, computed once."""
        cached = self._bounds.get(version_id)
        if cached is None:
            cached = self._bounds[version_id] = {
                component: tier_bounds(allowance=allowance, tiers=tiers)
                for component, (allowance, tiers) in self.prices.get(version_id, {}).items()}
        return cached

    def in_force(self, moment: datetime) -> PriceVersion | None:
        return version_in_force(self.versions, moment)

    def window(self, version: PriceVersion | None, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """The part of [start, end) whose hours `version` rates (None: before the first):
        from the first hour starting once it is in force to the next version's."""
        begin = version.effective_from if version is not None else None
        later = [v.effective_from for v in self.versions if begin is None or v.effective_from > begin]
        finish = hour_up(min(later)) if later else end
        return max(start, hour_up(begin)) if begin is not None else start, min(end, finish)

    def base_fee_version(self, start: datetime, end: datetime) -> PriceVersion | None:
        """The version whose base fee a month pays: the one in force at its start, else
        the first taking effect within it."""
        return self.in_force(start) or next((v for v in self.versions if start <= v.effective_from < end), None)


@dataclass
class _Line:
    """A line being rated: exact amounts, tier pieces summed per unit price."""

    deployment_name: str = ""
    quantity: Decimal = ZERO
    exact: Decimal = ZERO
    tiers: dict = field(default_factory=dict)  # unit price -> [from, to, quantity, amount]

    def add(self, start: Decimal, end: Decimal, bounds: list[tuple]) -> Decimal:
        """Price the units [start, end) of the month through `bounds` (as graduated does)
        into this line's tiers; their exact amount."""
        amount, position = ZERO, start
        for upper, unit_price in bounds:
            if position >= end:
                break
            if upper is not None and position >= upper:
                continue
            stop = end if upper is None or end <= upper else upper
            quantity = stop - position
            piece_amount = quantity * unit_price
            amount += piece_amount
            tier = self.tiers.get(unit_price)
            if tier is None:
                self.tiers[unit_price] = [position, stop, quantity, piece_amount]
            else:
                if position < tier[0]:
                    tier[0] = position
                if stop > tier[1]:
                    tier[1] = stop
                tier[2] += quantity
                tier[3] += piece_amount
            position = stop
        self.exact += amount
        return amount

    def tier_dicts(self) -> list[dict]:
        return [{"from": str(start), "to": str(end), "quantity": str(quantity), "unit_price": str(price),
                 "amount": str(amount)}
                for price, (start, end, quantity, amount) in sorted(self.tiers.items(), key=lambda t: t[1][0])]


@dataclass
class UsageRated:
    """A month's rollups rated: lines by key (component, deployment id, hardware,
    version id), the exact cost per (day, deployment name), and the list-price total of
    the requests and compute (what the gateway's spend counter charges for them)."""

    start: datetime
    end: datetime
    rates: Rates
    lines: dict[tuple, _Line] = field(default_factory=dict)
    daily: dict[tuple[date, str], Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    list_total: Decimal = ZERO
    rolled_through: datetime | None = None


_ROLLUPS = """
SELECT extract(epoch FROM hour)::bigint, deployment_id, deployment_name, hardware, meter, quantity
FROM billing_usagerollup
WHERE tenant_id = %(tenant)s AND hour >= %(start)s AND hour < %(end)s
ORDER BY hour, deployment_id, hardware, meter
"""


def usage_rate(*, tenant_id: int, rates: Rates, start: datetime, end: datetime) -> UsageRated:
    """Rate the rollups of [start, end) in time order (hour, then deployment id): each
    component's running month total decides the tier, across deployments and versions.
    (One plain query: a large tenant's month is tens of thousands of rows.)"""
    rated = UsageRated(start=start, end=end, rates=rates)
    with connection.cursor() as cursor:
        cursor.execute(_ROLLUPS, {"tenant": tenant_id, "start": start, "end": end})
        rows = cursor.fetchall()
    rated.rolled_through = (UsageRollup.unscoped.filter(tenant_id=tenant_id, hour__gte=start, hour__lt=end)
                            .aggregate(last=Max("rolled_at"))["last"])
    running: dict[str, Decimal] = defaultdict(lambda: ZERO)
    hour_seen, version_id, bounds_of, day = None, None, {}, None
    components: dict[tuple, str] = {}
    list_prices: dict[tuple, Decimal] = {}
    daily, lines = rated.daily, rated.lines
    for hour, deployment_id, deployment_name, hardware, meter, quantity in rows:
        if hour != hour_seen:
            hour_seen = hour
            moment = datetime.fromtimestamp(hour, tz=UTC)
            version = rates.in_force(moment)
            version_id, day = (version.pk if version is not None else None), moment.date()
            bounds_of = rates.bounds(version_id)
        component = components.get((meter, hardware))
        if component is None:
            component = components[(meter, hardware)] = component_of(meter=meter, hardware=hardware)
        amount_of = component_quantity(meter=meter, quantity=quantity)
        position = running[component]
        end = running[component] = position + amount_of
        key = (component, deployment_id, hardware, version_id)
        line = lines.get(key)
        if line is None:
            line = lines[key] = _Line()
        if deployment_name:
            line.deployment_name = deployment_name
        line.quantity += amount_of
        bounds = bounds_of.get(component)
        if bounds is None:
            bounds = FREE
        elif component != Component.RESERVED_MEMORY:  # the gateway's counter never charges it
            list_key = (version_id, component)
            unit_price = list_prices.get(list_key)
            if unit_price is None:
                unit_price = list_prices[list_key] = list_unit_price(rates.prices[version_id][component][1])
            rated.list_total += amount_of * unit_price
        daily[(day, deployment_name)] += line.add(position, end, bounds)
    return rated


def usage_lines(rated: UsageRated) -> list[InvoiceLine]:
    """The usage lines of a rated month, unsaved: by deployment, component, then version."""
    versions = {v.pk: v for v in rated.rates.versions}
    lines = []
    for key, line in sorted(rated.lines.items(), key=_line_order(versions)):
        component, deployment_id, hardware, version_id = key
        version = versions.get(version_id)
        service_start, service_end = rated.rates.window(version, rated.start, rated.end)
        tiers = line.tier_dicts()
        description = f"{LABELS[component]} — {line.deployment_name or 'deleted deployment'}"
        if len(rated.rates.versions) > 1 and (service_start, service_end) != (rated.start, rated.end):
            description += f" ({service_start:%Y-%m-%d %H:%M} to {service_end:%Y-%m-%d %H:%M} UTC)"
        lines.append(InvoiceLine(
            kind=LineKind.USAGE, component=component, deployment_id=deployment_id,
            deployment_name=line.deployment_name, hardware=hardware, price_version=version,
            service_start=service_start, service_end=service_end, description=description[:200],
            quantity=line.quantity, unit=UNITS[component],
            unit_price=Decimal(tiers[0]["unit_price"]) if len(tiers) == 1 else None,
            tiers=tiers, amount=money_round(line.exact)))
    return lines


def _line_order(versions):
    def order(item):
        (component, deployment_id, hardware, version_id), line = item
        version = versions.get(version_id)
        return (line.deployment_name, deployment_id or 0, COMPONENT_ORDER[component],
                version.effective_from if version is not None else datetime.min.replace(tzinfo=UTC))
    return order


def base_fee_line(rates: Rates, start: datetime, end: datetime) -> InvoiceLine | None:
    version = rates.base_fee_version(start, end)
    if version is None or not version.base_fee:
        return None
    return InvoiceLine(kind=LineKind.BASE_FEE, component="", price_version=version, service_start=start,
                       service_end=end, description=f"Monthly base fee, {start:%Y-%m}", quantity=Decimal(1),
                       unit="month", unit_price=version.base_fee, tiers=[], amount=money_round(version.base_fee))


def line_key(line) -> tuple:
    """What identifies a usage line across ratings (and its adjustments)."""
    return (line.component, line.deployment_id, line.hardware, line.price_version_id)
