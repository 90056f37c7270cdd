// Pure helpers for the usage chart: fill the minute series and scale it to the canvas.

export function fillMinutes(points, minutes, now = new Date()) {
  const byMinute = new Map(points.map((p) => [new Date(p.minute).toISOString().slice(0, 16), p]));
  const end = new Date(now);
  end.setUTCSeconds(0, 0);
  const series = [];
  for (let i = minutes - 1; i >= 0; i -= 1) {
    const minute = new Date(end.getTime() - i * 60_000);
    const key = minute.toISOString().slice(0, 16);
    const point = byMinute.get(key);
    series.push({ minute, requests: point ? point.requests : 0, errors: point ? point.errors : 0 });
  }
  return series;
}

export function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

export function bars(series, width, height) {
  const max = niceMax(Math.max(0, ...series.map((p) => p.requests)));
  const slot = width / Math.max(series.length, 1);
  return {
    max,
    bars: series.map((p, i) => ({
      x: i * slot + slot * 0.15,
      width: slot * 0.7,
      ok: ((p.requests - p.errors) / max) * height,
      errors: (p.errors / max) * height,
      point: p,
    })),
  };
}
