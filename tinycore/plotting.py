"""Figures the chapters share: one house style, heatmaps, and training curves.

Every function draws on an `Axes` it is given (or a new one) and returns it, so a chapter can
compose figures and tests can draw without showing anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

__all__ = ["use_style", "heatmap", "plot_curves"]

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "figure.facecolor": "white",  # a white card reads well on the book's light and dark themes
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "legend.frameon": False,
}


def use_style() -> None:
    """Apply the course's matplotlib style (called once in each chapter's setup cell)."""
    plt.rcParams.update(STYLE)


def heatmap(
    values,
    ax: plt.Axes | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    **imshow_kwargs,
) -> plt.Axes:
    """A labelled matrix plot. values: (rows, cols) tensor or array."""
    ax = ax or plt.gca()
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().float().numpy()
    image = ax.imshow(values, cmap=cmap, aspect="auto", **imshow_kwargs)
    ax.grid(False)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), row_labels)
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), col_labels)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    ax: plt.Axes | None = None,
    x: Sequence[float] | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    hlines: Mapping[str, float] | None = None,
    title: str | None = None,
) -> plt.Axes:
    """Several named curves on one axis, with optional labelled horizontal reference lines."""
    ax = ax or plt.gca()
    for name, ys in curves.items():
        ax.plot(x if x is not None else range(len(ys)), ys, label=name)
    for i, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, linestyle="--", color=f"C{len(curves) + i}", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    return ax
