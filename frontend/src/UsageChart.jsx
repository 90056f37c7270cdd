import { useEffect, useState } from "react";
import { bars, fillMinutes } from "./usageSeries.js";

const WIDTH = 720;
const HEIGHT = 160;
const REFRESH_MS = 10_000;

export default function UsageChart({ source, minutes }) {
  const [points, setPoints] = useState(null);
  const [failed, setFailed] = useState(false);
  const [hover, setHover] = useState(null);

  useEffect(() => {
    let cancelled = false;
    async function load() {
      try {
        const response = await fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error(String(response.status));
        const data = await response.json();
        if (!cancelled) {
          setPoints(Array.isArray(data) ? data : data.results ?? []);
          setFailed(false);
        }
      } catch {
        if (!cancelled) setFailed(true);
      }
    }
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => {
      cancelled = true;
      clearInterval(timer);
    };
  }, [source]);

  if (failed && points === null) return <p className="chart-empty">Usage chart unavailable.</p>;
  if (points === null) return <p className="chart-empty">Loading usage…</p>;
  const series = fillMinutes(points, minutes);
  const total = series.reduce((sum, p) => sum + p.requests, 0);
  if (total === 0) return <p className="chart-empty">No requests in the last {minutes} minutes.</p>;
  const { max, bars: rects } = bars(series, WIDTH, HEIGHT);

  return (
    <div className="usage-chart">
      <div className="usage-chart-legend">
        <span><i className="swatch ok" /> requests</span>
        <span><i className="swatch err" /> errors</span>
        <span className="muted">peak scale {max}/min · last {minutes} min</span>
      </div>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label="Requests per minute">
        {rects.map((b) => (
          <g key={b.point.minute.toISOString()} onMouseEnter={() => setHover(b)} onMouseLeave={() => setHover(null)}>
            <rect x={b.x} y={HEIGHT - b.ok - b.errors} width={b.width} height={b.ok} className="bar-ok" />
            <rect x={b.x} y={HEIGHT - b.errors} width={b.width} height={b.errors} className="bar-err" />
            <rect x={b.x} y={0} width={b.width} height={HEIGHT} fill="transparent" />
          </g>
        ))}
      </svg>
      <div className="usage-chart-tooltip">
        {hover
          ? `${hover.point.minute.toISOString().slice(11, 16)} UTC — ${hover.point.requests} requests, ${hover.point.errors} errors`
          : `${total} requests in the last ${minutes} minutes`}
      </div>
    </div>
  );
}
