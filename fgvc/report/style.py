"""The one figure style of fgvc: every function that draws a figure is decorated with
`@styled`, so all figures share fonts readable at a paper's column width, a colour-blind-safe
palette, the same colours for better / worse, and the same colour maps
(tests/test_figure_style.py checks the decorator is on every figure function).

Sizes: draw at the width the figure will be printed at (SINGLE column 3.5 in, DOUBLE 7.1 in)
with 8-9 pt text, instead of a wide figure shrunk until its text is unreadable.
Colours: Okabe & Ito's palette (distinguishable with every common colour-vision deficiency)
for methods; blue / vermillion for better / worse, never red / green; class colours picked
far apart in CIELAB, each class with its own marker too.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import numpy as np

SINGLE = 3.5  # inches: one column of a two-column paper
DOUBLE = 7.1  # inches: the full text width
# Okabe & Ito (2008), black last: method colours in order of appearance.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
METHOD_COLORS = OKABE_ITO
BETTER, WORSE, TIE = "#0072B2", "#D55E00", "#7f7f7f"  # the other method better / worse than CE / tied
SEQUENTIAL = "Blues"  # counts and rates from 0
DIVERGING = "RdBu_r"  # changes around 0 where more is worse (confusions): red = more, blue = fewer
RC = {
    "font.size": 8.5, "axes.titlesize": 9, "axes.labelsize": 8.5, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 7.5, "figure.titlesize": 9.5, "legend.frameon": False,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "grid.linewidth": 0.6, "lines.linewidth": 1.4, "lines.markersize": 5,
    "axes.prop_cycle": __import__("cycler").cycler(color=METHOD_COLORS),
}

F = TypeVar("F", bound=Callable)


def styled(draw: F) -> F:
    """Run a figure function under fgvc's style (matplotlib reads its rcParams while the
    artists are made, so the whole drawing, not only the Figure, runs inside it)."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(RC):
            return draw(*args, **kwargs)

    wrapper.__fgvc_styled__ = True
    return wrapper  # type: ignore[return-value]


def method_color(i: int) -> str:
    return METHOD_COLORS[i % len(METHOD_COLORS)]


def sign_color(d: float) -> str:
    """BETTER for a positive difference, WORSE for a negative one, TIE for none."""
    return BETTER if d > 1e-9 else WORSE if d < -1e-9 else TIE


# --------------------------------------------------------------------------- class colours
# Markers cycled over classes (filled shapes that stay legible at 4-5 pt), so two classes
# of similar colour still differ in shape.
MARKERS = "o^sDvP*Xhp<>"
# Seeds of the palette: Okabe-Ito without yellow and black, then colours picked greedily in CIELAB.
_SEED_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
_LIGHTNESS = (25.0, 72.0)  # CIELAB L* of added colours: dark enough to read on white, light enough to tell apart


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (n, 3) to CIELAB (D65)."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def distinct_colors(k: int) -> list[tuple[float, float, float]]:
    """`k` colours that stay apart on white: the seed colours, then each next colour the sRGB
    grid point (L* within _LIGHTNESS) farthest in CIELAB from those already chosen and from
    white. Deterministic (a glasbey-like palette without the dependency)."""
    from matplotlib.colors import to_rgb

    chosen = [to_rgb(c) for c in _SEED_COLORS[:k]]
    if len(chosen) >= k:
        return chosen
    steps = np.linspace(0, 1, 12)
    grid = np.array(np.meshgrid(steps, steps, steps, indexing="ij")).reshape(3, -1).T
    lab = to_lab(grid)
    keep = (lab[:, 0] >= _LIGHTNESS[0]) & (lab[:, 0] <= _LIGHTNESS[1])
    grid, lab = grid[keep], lab[keep]
    ref = to_lab(np.array(chosen + [(1.0, 1.0, 1.0)]))
    dist = np.min(np.linalg.norm(lab[:, None, :] - ref[None, :, :], axis=2), axis=1)
    while len(chosen) < k:
        i = int(np.argmax(dist))
        chosen.append(tuple(float(v) for v in grid[i]))
        dist = np.minimum(dist, np.linalg.norm(lab - lab[i], axis=1))
    return chosen


def class_style(k: int) -> tuple[list, list[str]]:
    """(colour, marker) per class: `distinct_colors`, and a marker per class cycled over
    MARKERS (one shape for up to 6 classes, where colour alone tells them apart)."""
    colors = distinct_colors(k)
    markers = ["o" if k <= len(_SEED_COLORS) else MARKERS[i % len(MARKERS)] for i in range(k)]
    return colors, markers


__all__ = ["styled", "SINGLE", "DOUBLE", "OKABE_ITO", "METHOD_COLORS", "BETTER", "WORSE", "TIE", "SEQUENTIAL",
           "DIVERGING", "RC", "method_color", "sign_color", "MARKERS", "to_lab", "distinct_colors", "class_style"]
