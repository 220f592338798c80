"""Bar charts drawn as inline SVG on the server: no script, no external asset, readable
without JavaScript. Every bar carries its value in a ``<title>`` (the browser shows it on
hover, screen readers read it), and the chart a summary ``aria-label``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal

from markupsafe import Markup, escape

__all__ = ["BarChart", "daily_points", "nice_ceiling"]

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 10, 24
MAX_BAR = 36.0


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (> 0)."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, 5, 10):
        candidate = Decimal(step).scaleb(exponent)
        if candidate >= value:
            return candidate
    return Decimal(10).scaleb(exponent)  # pragma: no cover (10 covers every mantissa)


def _number(value: Decimal) -> str:
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def daily_points(values: dict[date, Decimal]) -> list[tuple[date, Decimal]]:
    """Every day from the first given to the last, zeros filled in."""
    if not values:
        return []
    first, last = min(values), max(values)
    return [
        (first + timedelta(days=n), values.get(first + timedelta(days=n), Decimal(0)))
        for n in range((last - first).days + 1)
    ]


class BarChart:
    """One series of bars over days; negative values hang below the zero line."""

    def __init__(self, title: str, points: Sequence[tuple[date, Decimal]], unit: str = ""):
        self.title = title
        self.points = list(points)
        self.unit = unit

    def _label(self, value: Decimal) -> str:
        return f"{_number(value)} {self.unit}".strip()

    def svg(self) -> Markup:
        caption = Markup("<figcaption>{}</figcaption>").format(self.title)
        if not self.points:
            return Markup(
                '<figure class="chart-box">{}<p class="empty">Nothing yet.</p></figure>'
            ).format(caption)
        values = [Decimal(v) for _, v in self.points]
        top = nice_ceiling(max(max(values), Decimal(0)))
        bottom = -nice_ceiling(-min(values)) if min(values) < 0 else Decimal(0)
        span = top - bottom
        plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

        def y(value: Decimal) -> float:
            return TOP + float((top - value) / span) * plot_h

        slot = plot_w / len(self.points)
        bar = min(MAX_BAR, max(1.0, slot * 0.7))
        zero = y(Decimal(0))
        total = sum(values, Decimal(0))
        summary = (
            f"{self.title}: {len(self.points)} days from {self.points[0][0].isoformat()} to "
            f"{self.points[-1][0].isoformat()}, total {self._label(total)}, "
            f"highest {self._label(max(values))}"
        )
        parts = [
            f'<figure class="chart-box">{caption}',
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg">',
            f"<title>{escape(summary)}</title>",
        ]
        for value in (top, bottom) if bottom < 0 else (top, top / 2):
            parts.append(
                f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" '
                f'y2="{y(value):.1f}"/>'
                f'<text class="axis" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
                f"{escape(_number(value))}</text>"
            )
        parts.append(
            f'<line class="zero" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{zero:.1f}" '
            f'y2="{zero:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{zero + 4:.1f}" text-anchor="end">0</text>'
        )
        every = max(1, round(len(self.points) / 10))
        for n, (day, value) in enumerate(self.points):
            x = LEFT + n * slot + (slot - bar) / 2
            y0, y1 = sorted((y(value), zero))
            css = "bar negative" if value < 0 else "bar"
            parts.append(
                f'<rect class="{css}" x="{x:.1f}" y="{y0:.1f}" width="{bar:.1f}" '
                f'height="{max(y1 - y0, 0.0):.1f}"><title>{day.isoformat()}: '
                f"{escape(self._label(value))}</title></rect>"
            )
            if n % every == 0:
                parts.append(
                    f'<text class="axis" x="{x + bar / 2:.1f}" y="{HEIGHT - 6}" '
                    f'text-anchor="middle">{day.strftime("%d %b")}</text>'
                )
        parts.append("</svg></figure>")
        return Markup("".join(parts))
