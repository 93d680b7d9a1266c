"""Pictures of a training run as PNG bytes: wafer maps, ROC curve, confusion matrix.

Drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global figure
state), so they are safe in workers and threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

GOOD_COLOUR = "#2ca02c"
FAIL_COLOURS = (
    "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#8c6d31", "#637939", "#7b4173",
)  # fmt: skip
EMPTY_COLOUR = "#f0f0f0"
FAIL_PROBABILITY_CMAP = "RdYlGn_r"
DPI = 100


def wafer_map_png(
    x: Sequence[int] | np.ndarray,
    y: Sequence[int] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    title: str,
    kind: Literal["bins", "probability"] = "bins",
    good_bins: Sequence[int] = (1,),
) -> bytes:
    """One wafer's die map: ``kind="bins"`` colours hard bins (good green, each fail bin
    its own colour, with a legend of counts); ``kind="probability"`` colours the predicted
    fail probability from 0 to 1 with a colour bar. A die is one cell at (x, y)."""
    x, y, values = np.asarray(x), np.asarray(y), np.asarray(values)
    if not len(x) == len(y) == len(values):
        raise ValueError(f"x, y and values differ in length: {len(x)}, {len(y)}, {len(values)}")
    if kind not in ("bins", "probability"):
        raise ValueError(f"kind must be 'bins' or 'probability', not {kind!r}")
    figure, axes = _figure(5.6, 5.0)
    if kind == "bins":
        _draw_bins(figure, axes, x, y, values.astype(int), set(good_bins))
    else:
        _draw_probability(figure, axes, x, y, values.astype(float))
    axes.set_title(title)
    axes.set_xlabel("x")
    axes.set_ylabel("y")
    axes.set_aspect("equal")
    return _png(figure)


def roc_curve_png(
    y_true: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    title: str = "ROC curve",
    pos_label: int = 1,
) -> bytes:
    """ROC curve of ``scores`` (higher means ``pos_label``) with its AUC in the legend."""
    from sklearn.metrics import auc, roc_curve

    y_true, scores = np.asarray(y_true), np.asarray(scores)
    figure, axes = _figure(5.0, 5.0)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    if len(np.unique(y_true)) == 2:
        fpr, tpr, _ = roc_curve(y_true, scores, pos_label=pos_label)
        axes.plot(fpr, tpr, color="#1f77b4", label=f"model (AUC = {auc(fpr, tpr):.3f})")
    else:
        axes.text(0.5, 0.5, "undefined: one class only", ha="center", va="center")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), title=title)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.legend(loc="lower right")
    return _png(figure)


def confusion_matrix_png(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    labels: Sequence[str],
    title: str = "Confusion matrix",
) -> bytes:
    """Counts per (actual, predicted) cell, with each cell's share of its actual row."""
    matrix = np.asarray(matrix)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix of shape {matrix.shape} for {len(labels)} labels")
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    figure, axes = _figure(4.8, 4.2)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of actual")
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if shares[row, col] > 0.5 else "black"
        text = f"{count}\n{shares[row, col]:.1%}"
        axes.text(col, row, text, ha="center", va="center", color=colour)
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels)
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    return _png(figure)


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _grid(x: np.ndarray, y: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Dies on a (y, x) grid, NaN where there is no die; with imshow's extent."""
    cols, rows = np.rint(x).astype(int), np.rint(y).astype(int)
    x0, y0 = (cols.min(), rows.min()) if len(cols) else (0, 0)
    width = cols.max() - x0 + 1 if len(cols) else 1
    height = rows.max() - y0 + 1 if len(rows) else 1
    grid = np.full((height, width), np.nan)
    grid[rows - y0, cols - x0] = values
    extent = [x0 - 0.5, x0 + width - 0.5, y0 - 0.5, y0 + height - 0.5]
    return grid, extent


def _draw_bins(figure, axes, x, y, bins: np.ndarray, good: set[int]) -> None:
    order = sorted(set(bins.tolist()), key=lambda b: (b not in good, b))
    fail_colours = iter(FAIL_COLOURS * (len(order) // len(FAIL_COLOURS) + 1))
    colours = [GOOD_COLOUR if b in good else next(fail_colours) for b in order]
    index = {b: i for i, b in enumerate(order)}
    grid, extent = _grid(x, y, np.array([index[b] for b in bins.tolist()], dtype=float))
    cmap = ListedColormap(colours or [GOOD_COLOUR]).with_extremes(bad=EMPTY_COLOUR)
    axes.imshow(
        grid,
        cmap=cmap,
        vmin=-0.5,
        vmax=max(len(order), 1) - 0.5,
        origin="lower",
        extent=extent,
        interpolation="nearest",
    )
    counts = {b: int((bins == b).sum()) for b in order}
    handles = [
        Patch(color=c, label=f"bin {b}{' (good)' if b in good else ''}: {counts[b]}")
        for b, c in zip(order, colours)
    ]
    if handles:
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)


def _draw_probability(figure, axes, x, y, probability: np.ndarray) -> None:
    grid, extent = _grid(x, y, probability)
    image = axes.imshow(
        np.ma.masked_invalid(grid),
        cmap=FAIL_PROBABILITY_CMAP,
        vmin=0,
        vmax=1,
        origin="lower",
        extent=extent,
        interpolation="nearest",
    )
    axes.set_facecolor(EMPTY_COLOUR)
    figure.colorbar(image, ax=axes, label="predicted fail probability")


def pictures_page(title: str, pictures: dict[str, bytes]) -> str:
    """One self-contained HTML page showing PNG pictures (embedded, so no second request)."""
    import base64
    from html import escape

    figures = "".join(
        f"<figure><img alt='{escape(name)}' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode()}'><figcaption>{escape(name)}</figcaption></figure>"
        for name, png in pictures.items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1rem}figure{display:inline-block;margin:.5rem}"
        "img{max-width:420px}</style></head>"
        f"<body><h1>{escape(title)}</h1>{figures or '<p>No pictures were logged.</p>'}"
        "</body></html>"
    )
