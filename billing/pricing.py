"""Prices and the arithmetic of rating, with no database writes.

Units. Each component is priced per its own unit: `requests` per 1,000 requests,
`compute_cpu` and `compute_gpu` per second, `reserved_memory` per GB-hour. Rollups count
requests, compute milliseconds and GB-hours (billing/rollups.py); `component_quantity`
converts them exactly (Decimal division by a power of ten).

Graduated tiers. A month's first `free_allowance` units of a component are free. The
units beyond it go through the tiers in order: a tier prices the units whose position
(counted beyond the allowance) is at most its `up_to`; the last tier has none. Usage is
rated in the order it happened, so the units of one hour are priced by where the month's
running total stands when that hour is reached, whatever price version is in force then.

Rounding. Nothing is rounded while rating: a line's amount is the exact sum of its tier
pieces, rounded once, to the cent, half-up (`money_round`). An invoice's total is the
sum of its rounded lines."""
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from gateway.contract.errors import PlatformError

CENT = Decimal("0.01")
ZERO = Decimal(0)

UNITS = {
    "requests": "1,000 requests",
    "compute_cpu": "second",
    "compute_gpu": "second",
    "reserved_memory": "GB-hour",
}


def money_round(amount: Decimal) -> Decimal:
    """To the cent, half-up: the one rounding of an invoice line."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def component_of(*, meter: str, hardware: str) -> str:
    """The priced component a rollup row's meter and hardware fall under."""
    if meter == "requests":
        return "requests"
    if meter == "compute_ms":
        return "compute_gpu" if hardware == "gpu" else "compute_cpu"
    if meter == "reserved_gb_h":
        return "reserved_memory"
    raise ValueError(f"unknown meter {meter!r}")


def component_quantity(*, meter: str, quantity: Decimal) -> Decimal:
    """A rollup quantity in its component's unit: thousands of requests, seconds, GB-hours."""
    if meter in ("requests", "compute_ms"):
        return quantity / 1000
    return quantity


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None
    unit_price: Decimal


@dataclass
class Piece:
    """Some units of one line priced at one unit price: [start, end) in the month's units
    of the component, counted from the first (allowance included)."""

    start: Decimal
    end: Decimal
    unit_price: Decimal

    @property
    def quantity(self) -> Decimal:
        return self.end - self.start

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price


def tiers_parse(raw) -> list[Tier]:
    """A price's tiers from their stored form, or a PlatformError that says what is wrong."""
    if not isinstance(raw, list) or not raw:
        raise PlatformError("Give at least one tier, e.g. [{\"up_to\": null, \"unit_price\": \"0.40\"}].",
                            code="invalid_price")
    tiers, previous = [], ZERO
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"up_to", "unit_price"} or "unit_price" not in item:
            raise PlatformError(f"Tier {index + 1}: give unit_price and up_to (null for the last tier).",
                                code="invalid_price")
        unit_price = _decimal(item["unit_price"], f"Tier {index + 1}'s unit_price")
        up_to = item.get("up_to")
        if up_to is not None:
            up_to = _decimal(up_to, f"Tier {index + 1}'s up_to")
            if up_to <= previous:
                raise PlatformError(f"Tier {index + 1}: up_to must be more than the previous tier's ({previous}).",
                                    code="invalid_price")
            previous = up_to
        elif index != len(raw) - 1:
            raise PlatformError(f"Tier {index + 1}: only the last tier may have no up_to.", code="invalid_price")
        if unit_price < 0:
            raise PlatformError(f"Tier {index + 1}: unit_price cannot be negative.", code="invalid_price")
        tiers.append(Tier(up_to=up_to, unit_price=unit_price))
    if tiers[-1].up_to is not None:
        raise PlatformError("The last tier must have no up_to (null): it prices everything beyond the others.",
                            code="invalid_price")
    return tiers


def _decimal(value, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise PlatformError(f"{what} must be a decimal number, like \"0.40\".", code="invalid_price") from None
    if not number.is_finite():
        raise PlatformError(f"{what} must be a finite number.", code="invalid_price")
    return number


def tier_bounds(*, allowance: Decimal, tiers: list[Tier]) -> list[tuple[Decimal | None, Decimal]]:
    """[(upper position in the month, or None for no bound, unit price)], the allowance
    first at 0: the month's units as the tiers price them."""
    return [(allowance, ZERO)] + [(allowance + t.up_to if t.up_to is not None else None, t.unit_price)
                                  for t in tiers]


def graduated(*, allowance: Decimal, tiers: list[Tier], start: Decimal, quantity: Decimal) -> list[Piece]:
    """Price `quantity` units that come after `start` units of the month: the pieces, one
    per tier they cross (the allowance's units at a price of 0)."""
    pieces: list[Piece] = []
    position, end = start, start + quantity
    for upper, unit_price in tier_bounds(allowance=allowance, tiers=tiers):
        if position >= end:
            break
        if upper is not None and position >= upper:
            continue
        stop = end if upper is None else min(end, upper)
        if stop > position:
            pieces.append(Piece(start=position, end=stop, unit_price=unit_price))
            position = stop
    return pieces


def list_unit_price(tiers: list[Tier]) -> Decimal:
    """The highest unit price of a component's tiers: what the gateway's spend counter
    charges every unit, so that it never counts less than rating does."""
    return max(t.unit_price for t in tiers)


def version_in_force(versions, moment: datetime):
    """The price version in force at `moment`, from a plan's versions sorted by
    effective_from (oldest first); None before the first."""
    current = None
    for version in versions:
        if version.effective_from <= moment:
            current = version
        else:
            break
    return current
