import { useMemo, useState } from "react";
import { axisNeedsCents, colorOf, formatAxis, formatMoney, layoutColumns, monthDays, niceScale, stackDaily } from "./billingSeries.js";

// Drawn by hand in SVG, as the usage chart is: the bundle has no charting library, and one
// stacked bar chart does not justify adding one.
const WIDTH = 760;
const HEIGHT = 240;
const MARGIN = { top: 10, right: 8, bottom: 26, left: 58 };
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;

function dayLabel(day) {
  return new Date(`${day}T00:00:00Z`).toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
}

/** data: {period_start, period_end, currency, today, daily: [{day, deployment_name, amount}]} */
export default function BillingChart({ data }) {
  const [hover, setHover] = useState(null);
  const { currency } = data;
  const chart = useMemo(() => {
    const days = monthDays(data.period_start, data.period_end);
    const stacked = stackDaily(data.daily ?? [], days);
    const scale = niceScale(Math.max(0, ...stacked.columns.map((c) => c.total)));
    const columns = layoutColumns(stacked.columns, { width: PLOT_W, height: PLOT_H, max: scale.max });
    return { ...stacked, scale, columns };
  }, [data]);
  const colors = new Map(chart.deployments.map((d, i) => [d.name, colorOf(i)]));

  if (chart.deployments.length === 0) {
    return <p className="chart-empty" data-billing-chart-empty>No charges yet this month.</p>;
  }
  const labelEvery = chart.columns[0].slot < 18 ? 2 : 1;
  const cents = axisNeedsCents(chart.scale.ticks);
  const hovered = hover === null ? null : chart.columns[hover];
  // The tooltip stays inside the card at the first and last days.

  return (
    <div className="billing-chart-inner">
      <ul className="billing-legend" aria-label="Deployments">
        {chart.deployments.map((d) => (
          <li key={d.name} data-legend-item={d.name}>
            <i className="swatch" style={{ background: colors.get(d.name) }} />
            <code>{d.name}</code> <span className="muted">{formatMoney(d.total, currency)}</span>
          </li>
        ))}
      </ul>
      <div className="billing-plot">
        <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" data-billing-chart-svg
          aria-label={`Daily cost by deployment, ${formatMoney(chart.total, currency)} this month`}
          onMouseLeave={() => setHover(null)}>
          <g transform={`translate(${MARGIN.left},${MARGIN.top})`}>
            {chart.scale.ticks.map((tick) => {
              const y = PLOT_H - (tick / chart.scale.max) * PLOT_H;
              return (
                <g key={tick} className="tick">
                  <line x1={0} x2={PLOT_W} y1={y} y2={y} className={tick === 0 ? "axis" : "grid"} />
                  <text x={-8} y={y} dy="0.32em" textAnchor="end">{formatAxis(tick, currency, cents)}</text>
                </g>
              );
            })}
            {chart.columns.map((column, i) => (
              <g key={column.day} data-day={column.day} onMouseEnter={() => setHover(i)}
                className={hover === i ? "column hovered" : "column"}>
                <rect x={column.slotX} y={0} width={column.slot} height={PLOT_H} className="column-hit" />
                {column.rects.map((r) => (
                  <rect key={r.deployment} x={column.x} y={r.y} width={column.width} height={Math.max(r.height, 0.5)}
                    fill={colors.get(r.deployment)} data-bar data-deployment={r.deployment}>
                    <title>{`${dayLabel(column.day)} · ${r.deployment}: ${formatMoney(r.micros, currency)}`}</title>
                  </rect>
                ))}
                {i % labelEvery === 0 && (
                  <text x={column.slotX + column.slot / 2} y={PLOT_H + 16} textAnchor="middle" className="day">
                    {Number(column.day.slice(8))}
                  </text>
                )}
              </g>
            ))}
          </g>
        </svg>
        {hovered && (
          <div className="billing-tooltip" role="status" data-billing-tooltip
            style={{ left: `${Math.min(88, Math.max(14, ((MARGIN.left + hovered.slotX + hovered.slot / 2) / WIDTH) * 100))}%` }}>
            <div className="strong">{dayLabel(hovered.day)}</div>
            {hovered.segments.length === 0 && <div className="muted">No charges</div>}
            {[...hovered.segments].reverse().map((s) => (
              <div key={s.deployment} className="row">
                <span><i className="swatch" style={{ background: colors.get(s.deployment) }} />{s.deployment}</span>
                <span className="num">{formatMoney(s.micros, currency)}</span>
              </div>
            ))}
            {hovered.segments.length > 1 && (
              <div className="row total"><span>Total</span><span className="num">{formatMoney(hovered.total, currency)}</span></div>
            )}
          </div>
        )}
      </div>
      <div className="billing-chart-foot muted small">
        Days of {new Date(`${data.period_start}T00:00:00Z`).toLocaleDateString("en-US", { month: "long", year: "numeric", timeZone: "UTC" })} (UTC)
        · amounts in {String(currency).toUpperCase()}
      </div>
    </div>
  );
}
