"""Pictures of what each stage did: curves, frame grids, histograms, GIFs (PNG/GIF files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from dreamgym.files import atomic_write


def _save(figure: Figure, path: Path) -> None:
    """Figures are made without pyplot: no global backend is chosen, no figure stays registered."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))


def plot_curves(
    history: Sequence[dict[str, float]], keys: Sequence[str], path: Path, title: str, x: str = "epoch"
) -> None:
    """One panel per metric in ``keys`` against ``x``."""
    keys = [k for k in keys if any(k in row for row in history)]
    figure = Figure(figsize=(4 * len(keys), 3))
    axes = figure.subplots(1, len(keys), squeeze=False)
    for axis, key in zip(axes[0], keys):
        rows = [row for row in history if key in row]
        axis.plot([row[x] for row in rows], [row[key] for row in rows], marker="." if len(rows) < 50 else None)
        axis.set_xlabel(x)
        axis.set_title(key)
        axis.grid(alpha=0.3)
    figure.suptitle(title, y=1.04)  # above the panel titles
    _save(figure, path)


def frame_grid(
    rows: Sequence[tuple[str, np.ndarray]], path: Path, title: str, column_labels: Sequence[str] = ()
) -> None:
    """Rows of (label, frames (N, 64, 64, 3) uint8) as one picture."""
    columns = max(len(frames) for _, frames in rows)
    figure = Figure(figsize=(1.3 * columns, 1.4 * len(rows)))
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for c in range(columns):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            if c < len(frames):
                axis.imshow(frames[c])
            else:
                axis.axis("off")
            if c == 0:
                axis.set_ylabel(label, fontsize=8)
            if r == 0 and c < len(column_labels):
                axis.set_title(column_labels[c], fontsize=8)
    figure.suptitle(title)
    _save(figure, path)


def histogram(values: Sequence[float], path: Path, title: str, xlabel: str = "episode return") -> None:
    figure = Figure(figsize=(5, 3))
    axis = figure.subplots()
    axis.hist(values, bins=min(30, max(5, len(values) // 3)))
    mean, std = float(np.mean(values)), float(np.std(values))
    axis.axvline(mean, color="k", linestyle="--", label=f"mean {mean:.1f} ± {std:.1f}")
    axis.set_xlabel(xlabel)
    axis.set_ylabel("episodes")
    axis.legend()
    axis.set_title(title)
    _save(figure, path)


def side_by_side_gif(left: np.ndarray, right: np.ndarray, path: Path, fps: int = 20, scale: int = 3) -> None:
    """Two frame sequences (T, H, W, 3) uint8 next to each other, as an animated GIF."""
    length = max(len(left), len(right))

    def pad(frames: np.ndarray) -> np.ndarray:
        return np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), 0)])

    left, right = pad(left), pad(right)
    gap = np.full((length, left.shape[1], 4, 3), 255, np.uint8)
    joined = np.concatenate([left, gap, right], axis=2)
    nearest = Image.Resampling.NEAREST
    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), nearest) for f in joined]
    atomic_write(
        path,
        lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=1000 // fps, loop=0
        ),
    )


def plot_rounds(
    real_steps: Sequence[int],
    dream: Sequence[float],
    real: Sequence[float],
    real_std: Sequence[float],
    path: Path,
    title: str,
) -> None:
    """Dream and real score of each iterative round against the real steps used so far."""
    figure = Figure(figsize=(6, 3.5))
    axis = figure.subplots()
    axis.plot(real_steps, dream, marker="o", label="dream")
    axis.errorbar(real_steps, real, yerr=real_std, marker="o", capsize=3, label="real (± std)")
    for k, (x, y) in enumerate(zip(real_steps, real)):
        axis.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xlabel("real game steps used")
    axis.set_ylabel("score")
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(title)
    _save(figure, path)


def plot_temperatures(rows: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """The temperature sweep: dream and real score (± std) of the controller trained at each τ,
    and the paper's figures beside them when it has them (``paper_dream``, ``paper_real``)."""
    figure = Figure(figsize=(6, 3.5))
    axis = figure.subplots()
    taus = [row["temperature"] for row in rows]
    axis.errorbar(
        taus, [r["dream_mean"] for r in rows], yerr=[r["dream_std"] for r in rows], marker="o", capsize=3, label="dream"
    )
    axis.errorbar(
        taus,
        [r["real_mean"] for r in rows],
        yerr=[r["real_std"] for r in rows],
        marker="o",
        capsize=3,
        label="real game",
    )
    axis.set_xlabel("temperature τ (the controller is trained and scored in the dream at τ)")
    axis.set_ylabel("score")
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(title)
    _save(figure, path)
