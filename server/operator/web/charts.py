"""SVG charts drawn on the server: time series with limits, bands and a "now" line, and sparklines.

Drawn here rather than by a browser chart library so that pages need no script to be read, every
asset stays in this package, and a chart is testable as text. Colours come from CSS classes
(static/console.css), so the charts follow the page's palette.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Series:
    """A line over times `t_s` (a value of None breaks it); `step`: held until the next time."""

    label: str
    t_s: Sequence[int]
    values: Sequence[float | None]
    cls: str
    step: bool = False
    points: bool = False  # dots instead of a line (measurements)


@dataclass(frozen=True)
class Band:
    start_s: int
    end_s: int
    cls: str
    label: str = ""


@dataclass
class Frame:
    width: int
    height: int
    left: int = 64
    right: int = 14
    top: int = 12
    bottom: int = 26
    t0: float = 0.0
    t1: float = 1.0
    y0: float = 0.0
    y1: float = 1.0
    parts: list[str] = field(default_factory=list)

    def x(self, t: float) -> float:
        span = (self.t1 - self.t0) or 1.0
        return self.left + (t - self.t0) / span * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.top + (self.y1 - v) / span * (self.height - self.top - self.bottom)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    v = first
    while True:
        ticks.append(round(v, 10))
        if v >= hi - step * 1e-9:
            return ticks
        v += step


def fmt_value(v: float, unit: str) -> str:
    if unit == "W":
        a = abs(v)
        if a >= 1e6:
            return f"{v / 1e6:.3g} MW"
        if a >= 1e3:
            return f"{v / 1e3:.3g} kW"
        return f"{v:.0f} W"
    if unit == "pu":
        return f"{v:.3f} pu"
    if unit == "%":
        return f"{v:.0f} %"
    return f"{v:g}"


def time_chart(
    series: Sequence[Series],
    *,
    start_s: int,
    end_s: int,
    tz: str,
    unit: str,
    bands: Sequence[Band] = (),
    hlines: Sequence[tuple[float, str, str]] = (),
    now_s: int | None = None,
    width: int = 900,
    height: int = 240,
    title: str = "",
    zero_line: bool = False,
) -> Markup:
    """A time chart: `hlines` are (value, css class, label) reference lines such as a rating."""
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    values += [v for v, _, _ in hlines if math.isfinite(v)]
    if zero_line:
        values.append(0.0)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    ticks = nice_ticks(lo - pad, hi + pad)
    f = Frame(width, height, t0=start_s, t1=end_s, y0=ticks[0], y1=ticks[-1])
    label = escape(title)
    f.parts.append(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{label}" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
    )
    if title:
        f.parts.append(f"<title>{label}</title>")
    plot_bottom = height - f.bottom
    for b in bands:
        a, z = max(b.start_s, start_s), min(b.end_s, end_s)
        if z > a:
            f.parts.append(
                f'<rect class="{b.cls}" x="{f.x(a):.1f}" y="{f.top}" width="{max(f.x(z) - f.x(a), 1):.1f}" '
                f'height="{plot_bottom - f.top}"><title>{escape(b.label)}</title></rect>'
            )
    for v in ticks:
        y = f.y(v)
        f.parts.append(f'<line class="grid" x1="{f.left}" x2="{width - f.right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        text = fmt_value(v, unit)
        f.parts.append(f'<text class="tick" x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    zone = ZoneInfo(tz)
    step_s = _time_step(end_s - start_s)
    t = (start_s // step_s + 1) * step_s
    while t < end_s:
        x = f.x(t)
        local = datetime.fromtimestamp(t, UTC).astimezone(zone)
        text = local.strftime("%H:%M") if step_s < 86400 else local.strftime("%d %b")
        if local.hour == 0 and step_s < 86400:
            text = local.strftime("%a %d")
        f.parts.append(f'<line class="grid v" x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{plot_bottom}"/>')
        f.parts.append(f'<text class="tick" x="{x:.1f}" y="{height - 8}" text-anchor="middle">{text}</text>')
        t += step_s
    if zero_line and ticks[0] < 0 < ticks[-1]:
        y = f.y(0)
        f.parts.append(f'<line class="zero" x1="{f.left}" x2="{width - f.right}" y1="{y:.1f}" y2="{y:.1f}"/>')
    for v, cls, text in hlines:
        if math.isfinite(v):
            y = f.y(v)
            f.parts.append(
                f'<line class="{cls}" x1="{f.left}" x2="{width - f.right}" y1="{y:.1f}" y2="{y:.1f}">'
            )
            f.parts.append(f"<title>{escape(text)}</title></line>")
    for s in series:
        f.parts.append(_series(f, s, end_s))
    if now_s is not None and start_s <= now_s <= end_s:
        x = f.x(now_s)
        f.parts.append(f'<line class="now" x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{plot_bottom}"/>')
        f.parts.append(f'<text class="now-label" x="{x + 3:.1f}" y="{f.top + 10}">now</text>')
    f.parts.append("</svg>")
    return Markup("".join(f.parts))


def _time_step(span_s: int) -> int:
    for step in (900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 7 * 86400):
        if span_s / step <= 10:
            return step
    return 30 * 86400


def _series(f: Frame, s: Series, end_s: int) -> str:
    label = escape(s.label)
    if s.points:
        dots = [
            f'<circle cx="{f.x(t):.1f}" cy="{f.y(v):.1f}" r="2.2"/>'
            for t, v in zip(s.t_s, s.values, strict=True)
            if v is not None and math.isfinite(v) and f.t0 <= t <= f.t1
        ]
        return f'<g class="{s.cls}"><title>{label}</title>{"".join(dots)}</g>'
    path: list[str] = []
    pen_up = True
    times = list(s.t_s)
    for i, (t, v) in enumerate(zip(times, s.values, strict=True)):
        if v is None or not math.isfinite(v):
            pen_up = True
            continue
        x, y = f.x(max(t, f.t0)), f.y(v)
        path.append(f"{'M' if pen_up else 'L'}{x:.1f},{y:.1f}")
        pen_up = False
        if s.step:
            nxt = times[i + 1] if i + 1 < len(times) else end_s
            path.append(f"L{f.x(min(nxt, f.t1)):.1f},{y:.1f}")
    return f'<path class="{s.cls}" d="{" ".join(path)}"><title>{label}</title></path>'


def sparkline(
    values: Sequence[float | None],
    binding: Sequence[bool],
    *,
    width: int = 240,
    height: int = 34,
    cls: str = "spark",
    floor: float = 0.0,
    ceiling: float = 100.0,
    title: str = "",
) -> Markup:
    """Headroom % over the horizon (0 at the bottom: no headroom left), binding intervals in red."""
    n = max(len(values), 1)
    dx = width / n

    def y(v: float) -> float:
        v = min(max(v, floor), ceiling)
        return 2 + (ceiling - v) / (ceiling - floor) * (height - 4)

    parts = [
        f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, b in enumerate(binding):
        if b:
            w = max(dx, 1)
            parts.append(
                f'<rect class="band-binding" x="{i * dx:.1f}" y="0" width="{w:.1f}" height="{height}"/>'
            )
    pts = [
        f"{(i + 0.5) * dx:.1f},{y(v):.1f}" for i, v in enumerate(values) if v is not None and math.isfinite(v)
    ]
    if pts:
        parts.append(f'<polyline class="{cls}" points="{" ".join(pts)}"/>')
    parts.append(f'<line class="spark-base" x1="0" x2="{width}" y1="{height - 2}" y2="{height - 2}"/></svg>')
    return Markup("".join(parts))
