"""Figures of both tracks' studies, built only from tidy tables (STUDY §5, §7).

Every function takes a tidy frame and returns a matplotlib ``Figure``; colours per strategy are
fixed (:func:`strategy_palette`, random grey) so a strategy looks the same in every figure, and
random is always drawn first, underneath the others. Spreads over seeds are drawn as error bars
slightly shifted along x per strategy, not as filled bands that blur into each other.
:func:`save` writes a figure atomically and, inside a notebook, also shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter

from alhelpers.al.runs import final_round
from alhelpers.curves import paired_difference_by_round
from alhelpers.files import atomic_write
from alhelpers.paired import seeds_text

#: Fixed colours of the study's strategies (colour-blind-safe Okabe–Ito); others get the rest.
BASE_COLOURS = {
    "random": "#7f7f7f",
    "uncertainty": "#0072B2",
    "diversity": "#009E73",
    "hybrid": "#D55E00",
}
_EXTRA = ["#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000", "#8c564b", "#17becf", "#bcbd22"]
MAE_LABEL = "test MAE (eV/atom)"
N_LABEL = "labelled materials"


def strategy_palette(strategies: Sequence[str]) -> dict[str, str]:
    """A colour per strategy: the study's four fixed, any other in a stable order."""
    extra = iter(_EXTRA * 4)
    return {s: BASE_COLOURS.get(s) or next(extra) for s in sorted(set(strategies), key=_order)}


def _order(s: str) -> tuple[int, str]:
    keys = list(BASE_COLOURS)
    return (keys.index(s), s) if s in keys else (len(keys), s)


def _strategies(df: pd.DataFrame) -> list[str]:
    """The strategies of a table in drawing order: random first, then the study's, then the rest."""
    return sorted(df["strategy"].unique(), key=_order)


def _dodge(xs: Any, k: int, *, log: bool = False, spread: float = 0.3) -> np.ndarray:
    """Shifts of k strategies along x, together ``spread`` of the smallest step between the x values:
    added on a linear axis, multiplied on a log axis (``log=True``)."""
    u = np.unique(np.asarray(xs, dtype=float))
    u = np.log(u[u > 0]) if log else u
    if len(u) > 1:
        step = float(np.min(np.diff(u)))
    else:  # a single x: a tenth of it (a fifth of a log unit)
        step = 0.2 if log else (0.1 * abs(float(u[0])) if len(u) and u[0] else 1.0)
    shifts = (np.arange(k) - (k - 1) / 2) * (spread * step / max(k - 1, 1))
    return np.exp(shifts) if log else shifts


def _mean_errorbars(ax: plt.Axes, df: pd.DataFrame, *, x: str, y: str, order: Sequence[str],
                    pal: dict[str, str], log_x: bool = False, markersize: float = 4) -> None:
    """Mean of ``y`` over the rows (seeds) at each ``x``, one line per strategy in ``order``, with ±1 std
    error bars (none where there is one seed), dodged along x so no strategy hides another."""
    agg = df.groupby(["strategy", x])[y].agg(["mean", "std"]).reset_index()
    present = [s for s in order if s in set(agg.loc[agg["mean"].notna(), "strategy"])]
    bars = bool(np.isfinite(agg["std"].to_numpy(dtype=float)).any())  # one seed: no bars, nothing to dodge
    shifts = _dodge(agg[x], len(present), log=log_x) if bars else np.full(len(present), 1.0 if log_x else 0.0)
    for i, s in enumerate(present):
        part = agg[(agg["strategy"] == s) & agg["mean"].notna()].sort_values(x)
        xs = part[x].to_numpy(dtype=float)
        xs = xs * shifts[i] if log_x else xs + shifts[i]
        sd = part["std"].to_numpy(dtype=float)
        _errorbar(ax, xs, part["mean"].to_numpy(dtype=float), sd if bars else None, colour=pal[s], label=s,
                  rank=i, markersize=markersize)


def _errorbar(ax: plt.Axes, x: np.ndarray, y: np.ndarray, err: np.ndarray | None, *, colour: str, label: str,
              rank: int, markersize: float = 4) -> None:
    """One strategy's points joined by a line, with error bars ``err`` (symmetric, or 2 × n for
    below/above; missing ones drawn as none), the ``rank``-th strategy drawn above the earlier ones."""
    yerr = None if err is None or not np.isfinite(err).any() else np.nan_to_num(err)
    ax.errorbar(x, y, yerr=yerr, color=colour, label=label, marker="o", ms=markersize, lw=1.5, elinewidth=1.0,
                capsize=2.5, zorder=2 + 0.01 * rank)


class _PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (0.2, 0.3, 0.6) instead of 2×10⁻¹; which ticks get a label
    is matplotlib's usual choice (every minor tick on a short axis, only decades on a long one)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _plain_log_ticks(axis: Any) -> None:
    """Plain decimal labels on the major and minor ticks of a log-scaled ``ax.xaxis`` / ``ax.yaxis``."""
    axis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _log_limits(values: Any, *, margin: float = 0.08, min_decades: float = 0.3) -> tuple[float, float]:
    """Limits of a log axis around the positive ``values``: their range widened by ``margin`` of its
    length in decades on each side (and to at least ``min_decades``)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return 0.1, 1.0
    lo, hi = np.log10(v.min()), np.log10(v.max())
    if hi - lo < min_decades:
        mid = (lo + hi) / 2
        lo, hi = mid - min_decades / 2, mid + min_decades / 2
    pad = margin * (hi - lo)
    return float(10 ** (lo - pad)), float(10 ** (hi + pad))


def _figure_legend(fig: plt.Figure, axes: Any, order: Sequence[str], *, title: str | None = "strategy",
                   ncols: int | None = None, y: float = 0.0) -> int:
    """One legend for the whole figure below the panels, from the labelled artists of all ``axes``
    (each label once, those in ``order`` first and in that order); returns the number of entries."""
    found: dict[str, Any] = {}
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, h)
    rank = {s: i for i, s in enumerate(order)}
    handles = {k: found[k] for k in sorted(found, key=lambda k: rank.get(k, len(rank)))}
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", bbox_to_anchor=(0.5, y),
                   ncols=ncols or min(6, len(handles)), fontsize=9, title=title, title_fontsize=9, frameon=False)
    return len(handles)


def learning_curves(runs: pd.DataFrame, *, metric: str = "mae", ylabel: str = MAE_LABEL,
                    ncols: int = 2) -> plt.Figure:
    """Mean learning curve per strategy with ±1 std error bars over seeds, one panel per system.

    The strategies' points are shifted slightly along x (a few labelled materials) so that their error
    bars stand side by side; the legend is shared, below the panels.
    """
    systems = list(dict.fromkeys(runs["system"]))
    ncols = max(1, min(ncols, len(systems)))
    nrows = int(np.ceil(len(systems) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows + 0.5), squeeze=False)
    order = _strategies(runs)
    pal = strategy_palette(order)
    for ax, system in zip(axes.flat, systems):
        sub = runs[runs["system"] == system]
        _mean_errorbars(ax, sub, x="n_labelled", y=metric, order=order, pal=pal)
        n_seeds = sub["seed"].nunique()
        ax.set(title=f"{system}  ({seeds_text(n_seeds)}{', bars = ±1 std' if n_seeds > 1 else ''})",
               xlabel=N_LABEL, ylabel=ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(systems):]:
        ax.set_visible(False)
    _figure_legend(fig, axes.flat[:len(systems)], order, ncols=len(order))
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return fig


def difference_curves(runs: pd.DataFrame, *, baseline: str = "random", metric: str = "mae", ci: float = 0.95,
                      ncols: int = 2) -> plt.Figure:
    """How much better than ``baseline`` is each strategy, round by round, one panel per system?

    Points are the mean paired difference (same seed, same number of labelled materials) in % of the
    baseline's mean, bars its ``ci`` Student-t interval (:func:`alhelpers.curves.paired_difference_by_round`); below
    the line at 0 a strategy has the smaller error. An interval that excludes 0 is a difference the
    seeds can tell apart.
    """
    diff = paired_difference_by_round(runs, baseline=baseline, metric=metric, ci=ci)
    systems = list(dict.fromkeys(runs["system"]))
    ncols = max(1, min(ncols, len(systems)))
    nrows = int(np.ceil(len(systems) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows + 0.8), squeeze=False)
    order = [s for s in _strategies(runs) if s != baseline]
    pal = strategy_palette([baseline, *order])
    name = metric.upper() if metric in ("mae", "rmse") else metric
    for ax, system in zip(axes.flat, systems):
        sub = diff[diff["system"] == system]
        ax.axhline(0, color=pal[baseline], lw=1.5, label=baseline, zorder=1.5)
        ax.annotate(baseline, (1, 0), xycoords=("axes fraction", "data"), xytext=(3, 0), textcoords="offset points",
                    ha="left", va="center", fontsize=8, color=pal[baseline])  # beside the line, outside the axes
        present = [s for s in order if s in set(sub["strategy"])]
        shifts = _dodge(sub["n_labelled"], len(present))
        for i, s in enumerate(present):
            part = sub[sub["strategy"] == s]
            y = part["diff_pct"].to_numpy(dtype=float)
            err = np.vstack([y - part["diff_pct_low"].to_numpy(dtype=float),
                             part["diff_pct_high"].to_numpy(dtype=float) - y])
            _errorbar(ax, part["n_labelled"].to_numpy(dtype=float) + shifts[i], y, err, colour=pal[s], label=s, rank=i)
        n = sub["n_pairs"]
        seeds = "no pairs" if n.empty else (seeds_text(int(n.max())) if n.min() == n.max()
                                            else f"{int(n.min())}–{int(n.max())} seeds")
        ax.set(title=f"{system}  ({seeds})", xlabel=N_LABEL,
               ylabel=f"{name} − {baseline}'s {name} (% of {baseline})")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(systems):]:
        ax.set_visible(False)
    fig.suptitle(f"Paired difference to {baseline} per round, mean and {ci:.0%} confidence interval over seeds "
                 f"(below 0: smaller {name} than {baseline})", fontsize=10)
    _figure_legend(fig, axes.flat[:len(systems)], [baseline, *order], ncols=len(order) + 1)
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return fig


def final_bars(final: pd.DataFrame) -> plt.Figure:
    """Final-round MAE per system and strategy (mean ± std over seeds) from a final table."""
    order = _strategies(final)
    pal = strategy_palette(order)
    systems = list(dict.fromkeys(final["system"]))
    fig, ax = plt.subplots(figsize=(1.9 * len(systems) + 2.5, 4))
    width = 0.8 / len(order)
    x = np.arange(len(systems))
    for i, s in enumerate(order):
        sub = final[final["strategy"] == s].set_index("system").reindex(systems)
        ax.bar(x + (i - (len(order) - 1) / 2) * width, sub["mae_mean"], width, yerr=sub["mae_std"],
               color=pal[s], label=s, capsize=3, edgecolor="black", linewidth=0.4)
    ax.set_xticks(x, systems)
    ax.set(ylabel="final " + MAE_LABEL, xlabel="system",
           title="Final-round test MAE, mean ± std over seeds (lower is better)")
    ax.legend(title="strategy", fontsize=8, ncols=min(4, len(order)))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


_MARKERS = ["o", "X", "s", "P", "D", "^", "v", "<", ">", "p"]
_DASHES: list[tuple[float, ...]] = [(), (4, 1.5), (1, 1), (3, 1.25, 1.5, 1.25), (5, 1, 1, 1)]


def uncertainty_diagnostics(runs: pd.DataFrame) -> plt.Figure:
    """Is the ensemble's σ informative? Spearman ρ(σ, |error|) and mean σ vs MAE, per strategy.

    Right: log–log axes fitted to the data; the dashed diagonal is σ = MAE, the dotted lines
    σ = MAE/10, /100, … so a point's over-confidence factor can be read off.
    """
    order = _strategies(runs)
    pal = strategy_palette(order)
    systems = list(dict.fromkeys(runs["system"]))
    markers = dict(zip(systems, _MARKERS * (len(systems) // len(_MARKERS) + 1)))
    dashes = dict(zip(systems, _DASHES * (len(systems) // len(_DASHES) + 1)))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.6))
    sns.lineplot(data=runs, x="n_labelled", y="spearman_sigma_abs_err", hue="strategy", hue_order=order,
                 palette=pal, style="system", style_order=systems, markers=markers, dashes=dashes,
                 errorbar=None, ax=a, markersize=6, lw=1.3, legend=False)
    a.axhline(0, color="black", lw=0.8)
    a.set(xlabel=N_LABEL, ylabel="Spearman ρ(σ, |error|) on the test set",
          title="Does the uncertainty rank the errors? (0 = no)")
    a.grid(alpha=0.3)

    pts = runs[(runs["mean_sigma"] > 0) & (runs["mae"] > 0)]
    sns.scatterplot(data=pts, x="mean_sigma", y="mae", hue="strategy", hue_order=order, palette=pal,
                    style="system", style_order=systems, markers=markers, ax=b, s=26, alpha=0.75, legend=False, zorder=3)
    b.set(xscale="log", yscale="log")
    (x0, x1), (y0, y1) = _log_limits(pts["mean_sigma"]), _log_limits(pts["mae"])
    xs = np.geomspace(x0, x1, 2)

    def visible(factors: np.ndarray) -> list[float]:  # σ = MAE / factor (MAE = factor · σ) crosses the window
        return [float(f) for f in factors if f * x0 <= y1 and f * x1 >= y0]

    factors = visible(10.0 ** np.arange(0, 7))
    if len(factors) < 3:  # a narrow window: guides at every half decade (1, 3, 10, 30, …)
        factors = visible(np.sort(np.concatenate([10.0 ** np.arange(0, 7), 3 * 10.0 ** np.arange(0, 6)])))
    for factor in factors:
        diag = factor == 1
        b.plot(xs, factor * xs, color="black", lw=0.9 if diag else 0.8, ls="--" if diag else ":", zorder=1)
        top = factor * x1 > y1  # the line leaves the window at the top (else at the right): label it there,
        xe = y1 / factor if top else x1  # outside the axes, where it covers no point
        b.annotate("σ = MAE" if diag else f"σ = MAE/{factor:g}", (xe, factor * xe), xytext=(0, 2) if top else (3, 0),
                   textcoords="offset points", ha="center" if top else "left", va="bottom" if top else "center",
                   fontsize=7, annotation_clip=False)
    b.set(xlim=(x0, x1), ylim=(y0, y1))
    _plain_log_ticks(b.xaxis)
    _plain_log_ticks(b.yaxis)
    b.set(xlabel="mean ensemble σ (eV/atom)", ylabel=MAE_LABEL)
    if 1.0 in factors:
        title = "Calibration: points above the dashed σ = MAE line are over-confident"
    elif y0 > x1:  # σ = MAE runs below the window
        title = "Calibration: every point is over-confident (σ = MAE is off the window, bottom right)"
    else:
        title = "Calibration: every point is under-confident (σ = MAE is off the window, top left)"
    b.set_title(title, pad=13, fontsize=11)  # pad: room for the guides' labels above the axes
    b.grid(alpha=0.3, which="both")

    # one legend for both panels: colour = strategy, marker (and line style, left) = system
    handles = [Line2D([], [], color=pal[s], lw=2, label=s) for s in order]
    handles += [Line2D([], [], color="0.3", marker=markers[s], ls=(0, dashes[s]) if dashes[s] else "-", lw=1,
                       label=s) for s in systems]
    fig.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize=8, frameon=False,
               title="colour: strategy;  marker and line style: system", title_fontsize=8)
    fig.tight_layout(rect=(0, 0.11, 1, 1))
    return fig


def reliability_diagram(runs: pd.DataFrame, *, title: str = "Reliability of σ in the final round") -> plt.Figure:
    """Observed fraction of test errors inside σ's central intervals against their probability
    (:data:`alhelpers.calibration.RELIABILITY_COLUMNS`), final round, mean over seeds: one panel
    per system, a line per strategy, dashed for σ as the model gives it, solid recalibrated.
    On the diagonal a σ is calibrated; below it, over-confident."""
    from alhelpers.calibration import RELIABILITY_COLUMNS, RELIABILITY_LEVELS

    missing = [c for c in RELIABILITY_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"the runs lack the reliability columns {missing[:2]}…: they were made before the "
                         "calibration was recorded; rerun the active-learning notebook (03 or 07) to add them")
    fin = final_round(runs)
    systems = list(pd.unique(fin["system"]))
    order = _strategies(fin)
    pal = strategy_palette(order)
    k = len(RELIABILITY_LEVELS)
    ncols = min(2, len(systems))  # two panels a row: a figure that fits a page at any number of systems
    nrows = int(np.ceil(len(systems) / ncols))
    below = 0.5 if ncols > 1 else 0.0  # inches under the panels for the shared legend
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + (2.0 if ncols == 1 else 0.0), 3.9 * nrows + below),
                             squeeze=False)
    p = np.array([0.0, *RELIABILITY_LEVELS, 1.0])
    for ax, system in zip(axes.flat, systems):
        block = fin[fin["system"] == system]
        for strategy in order:
            part = block[block["strategy"] == strategy]
            if part.empty:
                continue
            for cols, ls, label in ((RELIABILITY_COLUMNS[:k], "--", "σ"), (RELIABILITY_COLUMNS[k:], "-", "σ'")):
                obs = part[list(cols)].mean().to_numpy(dtype=float)
                if np.isfinite(obs).all():
                    ax.plot(p, [0.0, *obs, 1.0], ls=ls, color=pal[strategy], marker="o", ms=3,
                            label=f"{strategy} ({label})")
        ax.plot([0, 1], [0, 1], color="black", lw=0.8)
        ax.set(xlabel="interval probability", ylabel="fraction of test errors inside",
               title=f"{system}", xlim=(0, 1), ylim=(0, 1))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(systems):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    # one legend for all panels, below them: a colour per strategy, a line style per σ
    handles = [Line2D([], [], color=pal[s], marker="o", ms=3, label=s) for s in order]
    handles += [Line2D([], [], color="black", ls="--", label="σ as given"),
                Line2D([], [], color="black", ls="-", label="σ' recalibrated")]
    fig.suptitle(f"{title}\n(on the diagonal: calibrated; below it: over-confident)", fontsize=11)
    if ncols == 1:  # one panel: the legend beside it
        axes[0, 0].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
    else:
        fig.legend(handles=handles, loc="lower center", ncols=min(6, len(handles)), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, below / (3.9 * nrows + below), 1, 1))
    return fig


def cross_database_curves(cross: pd.DataFrame, *, floor: pd.DataFrame | None = None) -> plt.Figure:
    """Learning curves when training on one database and testing on the other (STUDY §6).

    ``cross`` is a runs table with a ``direction`` column (e.g. ``"mp→oqmd"``); ``floor`` has
    one row per system with ``mae_shared`` (MP vs OQMD disagreement on shared compositions),
    drawn as a dashed line: no transfer can be expected to beat it. One row of panels per system
    (sharing its y axis), one column per direction; mean ± 1 std over seeds as dodged error bars;
    one legend for all panels below them.
    """
    systems = list(dict.fromkeys(cross["system"]))
    directions = list(dict.fromkeys(cross["direction"]))
    fig, axes = plt.subplots(len(systems), len(directions), figsize=(4.6 * len(directions), 3.0 * len(systems) + 0.6),
                             squeeze=False, sharey="row")
    order = _strategies(cross)
    pal = strategy_palette(order)
    floors = {} if floor is None else floor.drop_duplicates("system").set_index("system")["mae_shared"].to_dict()
    for i, system in enumerate(systems):
        for j, d in enumerate(directions):
            ax = axes[i, j]
            sub = cross[(cross["direction"] == d) & (cross["system"] == system)]
            if sub.empty:
                ax.set_visible(False)
                continue
            _mean_errorbars(ax, sub, x="n_labelled", y="mae", order=order, pal=pal, markersize=3.5)
            f = float(floors.get(system, np.nan))
            if np.isfinite(f):
                ax.axhline(f, color="black", ls="--", lw=1, label="MP vs OQMD on shared compositions", zorder=1.5)
            src, _, dst = d.partition("→")
            n = sub["seed"].nunique()
            ax.set_title(f"{system}: train {src}, test {dst}  ({seeds_text(n)})" if dst else f"{system}: {d}  ({seeds_text(n)})",
                         fontsize=10)
            ax.set(xlabel=N_LABEL if i == len(systems) - 1 else "", ylabel=MAE_LABEL if j == 0 else "")
            ax.grid(alpha=0.3)
    ncols = len(order) + 1 if len(order) <= 4 else 3
    n = _figure_legend(fig, axes, order, title=None, ncols=ncols)
    rows = int(np.ceil(n / ncols))
    fig.tight_layout(rect=(0, (0.25 + 0.2 * rows) / fig.get_figheight(), 1, 1))
    return fig


def saved_figure_metadata(path: str | Path) -> dict[str, dict[str, str]]:
    """The metadata :func:`save` attaches to a figure it shows in a notebook: ``{"alhelpers": {"saved_as":
    <file name>}}``, so that a test can find each saved figure's image among a notebook's outputs."""
    return {"alhelpers": {"saved_as": Path(path).name}}


def _in_kernel() -> bool:
    """Whether this runs inside an IPython kernel (a notebook), not a plain Python or terminal IPython."""
    try:
        import IPython
    except ImportError:
        return False
    ip = IPython.get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def save(fig: plt.Figure, path: str | Path, *, dpi: int = 130, show: bool = True) -> Path:
    """Write a figure as PNG (the format follows the suffix; PNG if none), show it in a notebook, close it.

    The file is written atomically (:func:`alhelpers.files.atomic_write`): a reader never sees half
    an image. Inside an IPython kernel, with ``show`` (default), the figure is displayed in the
    notebook with ``IPython.display.display(fig, metadata=saved_figure_metadata(path))`` — i.e.
    ``{"alhelpers": {"saved_as": <file name>}}`` — before it is closed, so every figure a notebook
    saves is also seen there, and its output can be matched to the file. Outside a kernel (plain
    Python, pytest) or with ``show=False`` nothing is displayed. The figure is closed either way;
    returns the path.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))
    if show and _in_kernel():
        from IPython.display import display

        display(fig, metadata=saved_figure_metadata(path))
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- Track B


def potential_curves(runs: pd.DataFrame, *, metrics: Sequence[tuple[str, str]] = (
        ("force_mae", "test force MAE (eV/Å)"), ("energy_mae", "test energy MAE (eV/atom)"))) -> plt.Figure:
    """Track B learning curves: one panel per (system, batch size, metric), mean over seeds with ±1 std
    error bars (dodged along x; none with one seed), one line per strategy, log-scaled error axis
    labelled in plain numbers (0.2, 0.3, 0.6)."""
    keys = list(dict.fromkeys(zip(runs["system"], runs["batch"])))
    order = _strategies(runs)
    pal = strategy_palette(order)
    fig, axes = plt.subplots(len(keys), len(metrics), figsize=(5.4 * len(metrics), 3.9 * len(keys)), squeeze=False)
    for row, (system, batch) in zip(axes, keys):
        sub = runs[(runs["system"] == system) & (runs["batch"] == batch)]
        n = sub["seed"].nunique()
        for ax, (metric, label) in zip(row, metrics):
            if sub[metric].notna().any():
                _mean_errorbars(ax, sub, x="n_labelled", y=metric, order=order, pal=pal)
                ax.set_yscale("log")
                _plain_log_ticks(ax.yaxis)
                ax.legend(title="strategy", fontsize=7, title_fontsize=8)
            ax.set(title=f"{system}, batch {batch} ({seeds_text(n)}{', bars = ±1 std' if n > 1 else ''})",
                   xlabel="labelled structures", ylabel=label)
            ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def error_vs_batch(runs: pd.DataFrame, *, metric: str = "force_mae", ylabel: str = "final force MAE (eV/Å)") -> plt.Figure:
    """Track B: final-round error against batch size per strategy (mean ± 1 std over seeds as error bars,
    dodged along x), one panel per system. Only runs that reached the same final training size are compared."""
    final = final_round(runs)
    systems = list(dict.fromkeys(final["system"]))
    order = _strategies(final)
    pal = strategy_palette(order)
    fig, axes = plt.subplots(1, len(systems), figsize=(5.6 * len(systems), 4.0), squeeze=False)
    for ax, system in zip(axes.flat, systems):
        sub = final[final["system"] == system]
        _mean_errorbars(ax, sub, x="batch", y=metric, order=order, pal=pal, log_x=True, markersize=5)
        sizes = sorted(sub["n_labelled"].unique())
        n = sub["seed"].nunique()
        ax.set(title=f"{system}: after {', '.join(map(str, sizes))} structures ({seeds_text(n)})", xlabel="batch size",
               ylabel=ylabel, xscale="log")
        ax.minorticks_off()
        ax.set_xticks(sorted(sub["batch"].unique()), labels=[str(b) for b in sorted(sub["batch"].unique())])
        ax.grid(alpha=0.3)
        ax.legend(title="strategy", fontsize=7, title_fontsize=8)
    fig.tight_layout()
    return fig


def campaign_suggestion(candidates: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """A campaign round's candidates (``round-NN/candidates.csv``): predicted formation energy
    against the calibrated σ', coloured by the probability of lying below the current hull; the
    suggested ones (``rank`` > 0) ringed and numbered."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    pts = ax.scatter(candidates["sigma_cal"], candidates["predicted"], c=candidates["p_below_hull"], cmap="viridis",
                     vmin=0, vmax=1, s=18, linewidths=0)
    chosen = candidates[candidates["rank"] > 0].sort_values("rank")
    ax.scatter(chosen["sigma_cal"], chosen["predicted"], s=110, facecolors="none", edgecolors="#D55E00", linewidths=1.6,
               label="suggested")
    for r in chosen.itertuples():
        ax.annotate(f"{r.rank}", (r.sigma_cal, r.predicted), xytext=(5, 4), textcoords="offset points", fontsize=8,
                    color="#D55E00")
    fig.colorbar(pts, ax=ax, label="P(below the hull of the labelled compounds)")
    ax.set_xlabel("calibrated σ' (eV/atom)")
    ax.set_ylabel("predicted formation energy (eV/atom)")
    ax.legend(loc="upper right", frameon=False)
    ax.set_title(title or f"{len(candidates)} candidates, {len(chosen)} suggested")
    fig.tight_layout()
    return fig


def _hull_xy(comp: Any, elements: Sequence[str]) -> tuple[float, float]:
    """Plot coordinates of a composition: the fraction of the second element (binary) or the
    triangle of three (pymatgen's ``triangular_coord``)."""
    fr = [comp.get_atomic_fraction(e) for e in elements]
    if len(elements) == 2:
        return fr[1], 0.0
    from pymatgen.analysis.phase_diagram import triangular_coord

    x, y = triangular_coord([fr[1], fr[2]])
    return float(x), float(y)


def campaign_hull(labelled: pd.DataFrame, candidates: pd.DataFrame, elements: Sequence[str]) -> plt.Figure:
    """The convex hull of the labelled compounds (``formula``, ``label``) of a two- or three-element
    system with the candidates drawn on it: a binary as formation energy against composition
    (candidates at their prediction with ±σ'), a ternary as the composition triangle (hull
    compounds and tie lines; candidates coloured by P(below hull)). Suggested ones are ringed."""
    from pymatgen.core import Composition

    from alhelpers.formation.hull import hull_diagram

    els = list(elements)
    if len(els) not in (2, 3):
        raise ValueError(f"a hull figure needs a two- or three-element system, got {els}")
    pd_ = hull_diagram(labelled["formula"].tolist(), labelled["label"].to_numpy(), els)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    stable = list(pd_.stable_entries)
    cand_xy = np.array([_hull_xy(Composition(f), els) for f in candidates["formula"]])
    chosen = (candidates["rank"] > 0).to_numpy()
    if len(els) == 2:
        pts = sorted((_hull_xy(e.composition, els)[0], pd_.get_form_energy_per_atom(e)) for e in stable)
        ax.plot(*zip(*pts), "-", color="#000000", lw=1.2, label="hull of the labelled compounds")
        lab = [(_hull_xy(Composition(f), els)[0], y) for f, y in zip(labelled["formula"], labelled["label"])
               if set(Composition(f).chemical_system.split("-")) <= set(els)]
        if lab:
            ax.plot(*zip(*lab), "o", color="#000000", ms=5, label="labelled")
        ax.errorbar(cand_xy[:, 0], candidates["predicted"], yerr=candidates["sigma_cal"], fmt="s", ms=4,
                    color="#0072B2", alpha=0.6, label="candidates (prediction ± σ')")
        ax.plot(cand_xy[chosen, 0], candidates["predicted"][chosen], "o", ms=12, mfc="none", mec="#D55E00", mew=1.6,
                label="suggested")
        ax.set_xlabel(f"fraction of {els[1]} (the rest {els[0]})")
        ax.set_ylabel("formation energy (eV/atom)")
        ax.legend(frameon=False, fontsize=8)
    else:
        corners = np.array([[0, 0], [1, 0], [0.5, np.sqrt(3) / 2], [0, 0]])
        ax.plot(corners[:, 0], corners[:, 1], color="#7f7f7f", lw=0.8)
        for (x, y), el in zip(corners[:3], els):
            ax.annotate(el, (x, y), xytext=(0, -12 if y == 0 else 6), textcoords="offset points", ha="center")
        for facet in pd_.facets:
            xy = np.array([_hull_xy(pd_.qhull_entries[i].composition, els) for i in facet] +
                          [_hull_xy(pd_.qhull_entries[facet[0]].composition, els)])
            ax.plot(xy[:, 0], xy[:, 1], color="#000000", lw=0.7)
        st = np.array([_hull_xy(e.composition, els) for e in stable])
        ax.plot(st[:, 0], st[:, 1], "o", color="#000000", ms=6, label="on the hull (labelled)")
        pts = ax.scatter(cand_xy[:, 0], cand_xy[:, 1], c=candidates["p_below_hull"], cmap="viridis", vmin=0, vmax=1,
                         s=30, marker="s", label="candidates")
        ax.plot(cand_xy[chosen, 0], cand_xy[chosen, 1], "o", ms=13, mfc="none", mec="#D55E00", mew=1.6,
                label="suggested")
        fig.colorbar(pts, ax=ax, label="P(below the hull)")
        ax.set_aspect("equal")
        ax.axis("off")
        ax.legend(loc="upper right", frameon=False, fontsize=8)
    ax.set_title(f"{'-'.join(els)}: the hull of {len(labelled)} labelled compounds and {len(candidates)} candidates")
    fig.tight_layout()
    return fig
