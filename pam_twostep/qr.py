"""QR codes for enrollment: drawn in a terminal, or as SVG for the portal.

The terminal drawing uses half blocks, two module rows per text line, and draws the
*light* modules (with a quiet zone of four), the convention of ``qrencode -t UTF8``:
on the usual light-on-dark terminal, the code then appears dark on light, as phones
expect.
"""

from __future__ import annotations

import segno

__all__ = ["QUIET_ZONE", "matrix", "svg", "terminal"]

QUIET_ZONE = 4
_GLYPHS = {
    (False, False): " ",
    (True, False): "\u2580",
    (False, True): "\u2584",
    (True, True): "\u2588",
}


def matrix(text: str) -> list[list[bool]]:
    """Dark modules of the QR code for ``text`` (error correction M), without quiet zone."""
    code = segno.make(text, error="m", micro=False, boost_error=False)
    return [[bool(cell) for cell in row] for row in code.matrix]


def terminal(text: str) -> str:
    """The code as lines of half blocks (light modules drawn), quiet zone included."""
    dark = matrix(text)
    size = len(dark) + 2 * QUIET_ZONE

    def light(row: int, column: int) -> bool:
        inner_row, inner_column = row - QUIET_ZONE, column - QUIET_ZONE
        if 0 <= inner_row < len(dark) and 0 <= inner_column < len(dark):
            return not dark[inner_row][inner_column]
        return True

    lines = []
    for top in range(0, size, 2):
        lines.append(
            "".join(
                _GLYPHS[(light(top, column), top + 1 < size and light(top + 1, column))]
                for column in range(size)
            )
        )
    return "\n".join(lines)


def svg(text: str, scale: int = 5) -> str:
    """An inline SVG of the code, for the portal's enrollment page."""
    code = segno.make(text, error="m", micro=False, boost_error=False)
    result: str = code.svg_inline(
        scale=scale,
        border=QUIET_ZONE,
        dark="#000",
        light="#fff",
        omitsize=True,  # a viewBox instead, so the page can size it
        title="QR code of the key for your authenticator app",
    )
    return result
