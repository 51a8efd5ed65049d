"""Tray and window icons drawn with Pillow: one colour and one glyph per worker state, so the state
reads at a glance and also without colour vision (idle ✓, busy ▶, paused ❚❚, error !, offline ⊘)."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw

from ..engine import State

# The same palette as the portal's status badges.
STATE_COLOURS = {
    State.IDLE: "#16a34a",
    State.BUSY: "#2563eb",
    State.PAUSED: "#d97706",
    State.ERROR: "#dc2626",
    State.OFFLINE: "#6b7280",
}
STATES = tuple(STATE_COLOURS)
_SUPERSAMPLE = 4  # draw big, then shrink: Pillow's shapes have no anti-aliasing of their own


def colour(state: State | str) -> str:
    return STATE_COLOURS.get(state, STATE_COLOURS[State.OFFLINE])


@lru_cache(maxsize=32)
def state_icon(state: State | str, size: int = 64) -> Image.Image:
    """An RGBA icon for state (unknown states draw as offline); cached, so treat it as read-only."""
    state = State(state) if state in STATE_COLOURS else State.OFFLINE
    big = size * _SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    fill, white = colour(state), "#ffffff"
    pad = big * 0.04
    u = big / 16  # a grid unit: glyphs are laid out on 16 x 16

    if state == State.ERROR:  # a warning triangle: the one shape that is not a disc
        draw.polygon([(big / 2, pad), (big - pad, big - pad * 1.5), (pad, big - pad * 1.5)], fill=fill)
        draw.rounded_rectangle([7.1 * u, 5.2 * u, 8.9 * u, 10.6 * u], radius=0.9 * u, fill=white)
        draw.ellipse([7.05 * u, 11.6 * u, 8.95 * u, 13.5 * u], fill=white)
    elif state == State.OFFLINE:  # a hollow ring with a slash: "not connected"
        width = int(2.2 * u)
        draw.ellipse([pad, pad, big - pad, big - pad], outline=fill, width=width)
        draw.line([(4 * u, 12 * u), (12 * u, 4 * u)], fill=fill, width=width)
    else:
        draw.ellipse([pad, pad, big - pad, big - pad], fill=fill)
        if state == State.IDLE:  # a check mark
            draw.line([(4.6 * u, 8.4 * u), (7.0 * u, 10.8 * u), (11.6 * u, 5.6 * u)], fill=white,
                      width=int(2.0 * u), joint="curve")
        elif state == State.BUSY:  # a play triangle
            draw.polygon([(6.2 * u, 4.6 * u), (12.0 * u, 8 * u), (6.2 * u, 11.4 * u)], fill=white)
        elif state == State.PAUSED:  # two bars
            draw.rounded_rectangle([5.0 * u, 4.6 * u, 7.0 * u, 11.4 * u], radius=0.5 * u, fill=white)
            draw.rounded_rectangle([9.0 * u, 4.6 * u, 11.0 * u, 11.4 * u], radius=0.5 * u, fill=white)
    return image.resize((size, size), Image.LANCZOS)


def app_icon(size: int = 64) -> Image.Image:
    """The window's icon: the brand mark, a rounded square with a stylised P (not a state)."""
    big = size * _SUPERSAMPLE
    u = big / 16
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle([0.5 * u, 0.5 * u, 15.5 * u, 15.5 * u], radius=3.5 * u, fill="#1e293b")
    draw.rounded_rectangle([4.6 * u, 3.6 * u, 11.8 * u, 9.6 * u], radius=3.0 * u, outline="#ffffff",
                           width=int(2.1 * u))
    draw.rounded_rectangle([4.6 * u, 3.6 * u, 6.7 * u, 12.6 * u], radius=0.5 * u, fill="#ffffff")
    draw.rounded_rectangle([9.6 * u, 10.6 * u, 11.8 * u, 12.8 * u], radius=0.5 * u, fill="#38bdf8")
    return image.resize((size, size), Image.LANCZOS)
