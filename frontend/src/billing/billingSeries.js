// Pure helpers for the Billing page's daily cost chart: the month's days, the cost of each
// day stacked by deployment, a nice y scale and money in the plan's currency.
//
// Amounts arrive as Decimal strings. They are summed as integer micro-units (exact to six
// decimals, as the rating's pieces are), so a day's total shown here is the sum of its parts
// to the cent; only pixel positions are floats.

const MICRO = 1_000_000;

/** "12.345" -> 12345000 micro-units; rounds half-up beyond six decimals. */
export function toMicros(amount) {
  const text = String(amount ?? "0").trim();
  const match = /^(-?)(\d*)(?:\.(\d*))?$/.exec(text);
  if (!match) return 0;
  const [, sign, whole, fraction = ""] = match;
  const digits = (fraction + "0000000").slice(0, 7);
  let micros = Number(whole || "0") * MICRO + Number(digits.slice(0, 6));
  if (Number(digits[6]) >= 5) micros += 1;
  return sign ? -micros : micros;
}

/** Every day of [periodStart, periodEnd) as "YYYY-MM-DD" (UTC calendar days). */
export function monthDays(periodStart, periodEnd) {
  const days = [];
  const end = new Date(`${periodEnd}T00:00:00Z`).getTime();
  for (let t = new Date(`${periodStart}T00:00:00Z`).getTime(); t < end; t += 86_400_000) {
    days.push(new Date(t).toISOString().slice(0, 10));
  }
  return days;
}

/** The daily costs ({day, deployment_name, amount}) as one column per day of `days`, each a
 * stack of segments [y0, y1) in micro-units, deployments in the same order in every column:
 * the costliest of the month at the bottom. Days outside `days` are left out. */
export function stackDaily(daily, days) {
  const totals = new Map();
  const cells = new Map();
  const inMonth = new Set(days);
  for (const row of daily) {
    const day = String(row.day).slice(0, 10);
    if (!inMonth.has(day)) continue;
    const name = row.deployment_name || "(no deployment)";
    const micros = toMicros(row.amount);
    totals.set(name, (totals.get(name) ?? 0) + micros);
    const key = `${day}\u0000${name}`;
    cells.set(key, (cells.get(key) ?? 0) + micros);
  }
  const deployments = [...totals.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([name, total]) => ({ name, total }));
  const columns = days.map((day) => {
    let y = 0;
    const segments = [];
    for (const { name } of deployments) {
      const micros = cells.get(`${day}\u0000${name}`) ?? 0;
      if (micros > 0) segments.push({ deployment: name, micros, y0: y, y1: y + micros });
      y += Math.max(micros, 0);
    }
    return { day, segments, total: y };
  });
  return { deployments, columns, total: deployments.reduce((sum, d) => sum + d.total, 0) };
}

/** A round upper bound for the y axis and its ticks (micro-units), 4 or 5 steps of 1, 2 or 5
 * times a power of ten, at least one cent. */
export function niceScale(maxMicros, steps = 4) {
  const max = Math.max(maxMicros, 10_000);
  const raw = max / steps;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const top = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Math.round(v));
  return { max: ticks[ticks.length - 1], ticks };
}

/** Micro-units as money in `currency` (ISO 4217, any case): "$1,234.56". Below a cent but
 * above zero shows "< $0.01", so a day with a little usage is not read as free. */
export function formatMoney(micros, currency, locale = "en-US") {
  const format = new Intl.NumberFormat(locale, { style: "currency", currency: String(currency || "usd").toUpperCase() });
  if (micros > 0 && micros < 5_000) return `< ${format.format(0.01)}`;
  // Half-up to the cent on the integer, then one division: no float drift in what is shown.
  const cents = Math.sign(micros) * Math.floor((Math.abs(micros) + 5_000) / 10_000);
  return format.format(cents / 100);
}

/** A compact axis label: "$0", "$2.50", "$1.2K"; with `cents`, whole amounts too show their
 * cents ("$1.00"), so that the labels of one axis read alike. */
export function formatAxis(micros, currency, cents = micros % MICRO !== 0, locale = "en-US") {
  const code = String(currency || "usd").toUpperCase();
  const value = micros / MICRO;
  if (value >= 1000) {
    return new Intl.NumberFormat(locale, { style: "currency", currency: code, notation: "compact",
      maximumFractionDigits: 1 }).format(value);
  }
  const digits = cents && value !== 0 ? 2 : 0;
  return new Intl.NumberFormat(locale, { style: "currency", currency: code,
    minimumFractionDigits: digits, maximumFractionDigits: Math.max(digits, 2) }).format(value);
}

/** Whether an axis with these ticks needs cents on its labels. */
export function axisNeedsCents(ticks) {
  return ticks.some((tick) => tick % MICRO !== 0 && tick < 1000 * MICRO);
}

// Distinct on white and for common colour blindness (Okabe-Ito, then Tableau's next hues).
export const PALETTE = ["#4f46e5", "#e69f00", "#009e73", "#cc79a7", "#0072b2", "#d55e00", "#56b4e9", "#8c564b"];

export function colorOf(index) {
  return PALETTE[index % PALETTE.length];
}

/** Column geometry: bars in a plot `width` wide and `height` high, scaled to `max`. */
export function layoutColumns(columns, { width, height, max }) {
  const slot = width / Math.max(columns.length, 1);
  const barWidth = Math.max(2, slot * 0.68);
  const scale = (micros) => (max > 0 ? (micros / max) * height : 0);
  return columns.map((column, i) => ({
    ...column,
    x: i * slot + (slot - barWidth) / 2,
    slotX: i * slot,
    slot,
    width: barWidth,
    rects: column.segments.map((s) => ({ ...s, y: height - scale(s.y1), height: scale(s.y1) - scale(s.y0) })),
  }));
}
