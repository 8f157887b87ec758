"""Figures of both tracks' studies, built only from tidy tables (STUDY §5, §7).

Every function takes a tidy frame and returns a matplotlib ``Figure``; colours per strategy are
fixed (:func:`strategy_palette`) so a strategy looks the same in every figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from alhelpers.al.runs import final_round

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
    return sorted(df["strategy"].unique(), key=_order)


def learning_curves(runs: pd.DataFrame, *, metric: str = "mae", ylabel: str = MAE_LABEL,
                    ncols: int = 2) -> plt.Figure:
    """Mean learning curve per strategy with a ±1 std band over seeds, one panel per system."""
    systems = list(dict.fromkeys(runs["system"]))
    nrows = int(np.ceil(len(systems) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    order = _strategies(runs)
    pal = strategy_palette(order)
    for ax, system in zip(axes.flat, systems):
        sub = runs[runs["system"] == system]
        sns.lineplot(data=sub, x="n_labelled", y=metric, hue="strategy", hue_order=order,
                     palette=pal, errorbar="sd", marker="o", markersize=4, ax=ax)
        n_seeds = sub["seed"].nunique()
        ax.set(title=f"{system}  ({n_seeds} seeds, band = ±1 std)", xlabel=N_LABEL, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(title="strategy", fontsize=8)
    for ax in list(axes.flat)[len(systems):]:
        ax.set_visible(False)
    fig.tight_layout()
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


def uncertainty_diagnostics(runs: pd.DataFrame) -> plt.Figure:
    """Is the ensemble's σ informative? Spearman ρ(σ, |error|) and mean σ vs MAE, per strategy."""
    order = _strategies(runs)
    pal = strategy_palette(order)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    sns.lineplot(data=runs, x="n_labelled", y="spearman_sigma_abs_err", hue="strategy",
                 hue_order=order, palette=pal, style="system", errorbar=None, ax=a, markers=True)
    a.axhline(0, color="black", lw=0.8)
    a.set(xlabel=N_LABEL, ylabel="Spearman ρ(σ, |error|) on the test set",
          title="Does the uncertainty rank the errors? (0 = no)")
    a.grid(alpha=0.3)
    a.legend(fontsize=7, ncols=2)
    sns.scatterplot(data=runs, x="mean_sigma", y="mae", hue="strategy", hue_order=order,
                    palette=pal, style="system", ax=b, s=22, alpha=0.7)
    lim = [0, float(max(runs["mae"].max(), runs["mean_sigma"].max())) * 1.05]
    b.plot(lim, lim, color="black", lw=0.8, ls="--", label="σ = MAE")
    b.set(xlabel="mean ensemble σ (eV/atom)", ylabel=MAE_LABEL,
          title="Calibration: points above the line are over-confident")
    b.grid(alpha=0.3)
    b.legend(fontsize=7, ncols=2)
    fig.tight_layout()
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
    fig, axes = plt.subplots(1, len(systems), figsize=(4.2 * len(systems), 4.0), squeeze=False)
    p = np.array([0.0, *RELIABILITY_LEVELS, 1.0])
    for ax, system in zip(axes[0], systems):
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
        ax.set(xlabel="interval probability", ylabel="observed fraction of test errors inside",
               title=f"{system}", xlim=(0, 1), ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncols=1, loc="lower right")
    fig.suptitle(f"{title}: dashed as given, solid recalibrated (σ')")
    fig.tight_layout()
    return fig


def cross_database_curves(cross: pd.DataFrame, *, floor: pd.DataFrame | None = None) -> plt.Figure:
    """Learning curves when training on one database and testing on the other (STUDY §6).

    ``cross`` is a runs table with a ``direction`` column (e.g. ``"mp→oqmd"``); ``floor`` has
    one row per system with ``mae_shared`` (MP vs OQMD disagreement on shared compositions),
    drawn as a dashed line: no transfer can be expected to beat it.
    """
    systems = list(dict.fromkeys(cross["system"]))
    directions = list(dict.fromkeys(cross["direction"]))
    fig, axes = plt.subplots(len(directions), len(systems), figsize=(4.3 * len(systems), 3.5 * len(directions)),
                             squeeze=False, sharey="col")
    order = _strategies(cross)
    pal = strategy_palette(order)
    for i, d in enumerate(directions):
        for j, system in enumerate(systems):
            ax = axes[i, j]
            sub = cross[(cross["direction"] == d) & (cross["system"] == system)]
            if sub.empty:
                ax.set_visible(False)
                continue
            sns.lineplot(data=sub, x="n_labelled", y="mae", hue="strategy", hue_order=order, palette=pal,
                         errorbar="sd", marker="o", markersize=3, ax=ax, legend=(i == 0 and j == 0))
            if floor is not None and system in set(floor["system"]):
                f = float(floor.set_index("system").loc[system, "mae_shared"])
                if np.isfinite(f):
                    ax.axhline(f, color="black", ls="--", lw=1, label="MP vs OQMD on shared compositions")
            ax.set(title=f"{system}: train {d.replace('→', ', test ')}", xlabel=N_LABEL, ylabel=MAE_LABEL)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if axes[0, 0].get_legend():
        axes[0, 0].get_legend().remove()
    fig.legend(handles, labels, loc="lower center", ncols=min(6, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def save(fig: plt.Figure, path: str | Path, *, dpi: int = 130) -> Path:
    """Write a figure as PNG and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- Track B


def potential_curves(runs: pd.DataFrame, *, metrics: Sequence[tuple[str, str]] = (
        ("force_mae", "test force MAE (eV/Å)"), ("energy_mae", "test energy MAE (eV/atom)"))) -> plt.Figure:
    """Track B learning curves: one panel per (system, batch size, metric), mean ± 1 std over seeds,
    one line per strategy, log-scaled error axis."""
    keys = list(dict.fromkeys(zip(runs["system"], runs["batch"])))
    order = sorted(runs["strategy"].unique(), key=lambda m: (m != "random", m))
    pal = strategy_palette(order)
    fig, axes = plt.subplots(len(keys), len(metrics), figsize=(5.4 * len(metrics), 3.9 * len(keys)), squeeze=False)
    for row, (system, batch) in zip(axes, keys):
        sub = runs[(runs["system"] == system) & (runs["batch"] == batch)]
        for ax, (metric, label) in zip(row, metrics):
            if sub[metric].notna().any():
                sns.lineplot(data=sub, x="n_labelled", y=metric, hue="strategy", hue_order=order, palette=pal,
                             errorbar="sd", marker="o", markersize=4, ax=ax)
                ax.set_yscale("log")
                ax.legend(title="strategy", fontsize=7)
            ax.set(title=f"{system}, batch {batch} ({sub['seed'].nunique()} seeds, ±1 std)",
                   xlabel="labelled structures", ylabel=label)
            ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def error_vs_batch(runs: pd.DataFrame, *, metric: str = "force_mae", ylabel: str = "final force MAE (eV/Å)") -> plt.Figure:
    """Track B: final-round error against batch size per strategy (mean ± 1 std over seeds), one panel
    per system. Only runs that reached the same final training size are compared."""
    final = final_round(runs)
    systems = list(dict.fromkeys(final["system"]))
    order = sorted(final["strategy"].unique(), key=lambda m: (m != "random", m))
    pal = strategy_palette(order)
    fig, axes = plt.subplots(1, len(systems), figsize=(5.6 * len(systems), 4.0), squeeze=False)
    for ax, system in zip(axes.flat, systems):
        sub = final[final["system"] == system]
        sns.lineplot(data=sub, x="batch", y=metric, hue="strategy", hue_order=order, palette=pal,
                     errorbar="sd", marker="o", ax=ax)
        sizes = sorted(sub["n_labelled"].unique())
        ax.set(title=f"{system}: after {', '.join(map(str, sizes))} structures", xlabel="batch size",
               ylabel=ylabel, xscale="log")
        ax.minorticks_off()
        ax.set_xticks(sorted(sub["batch"].unique()), labels=[str(b) for b in sorted(sub["batch"].unique())])
        ax.grid(alpha=0.3)
        ax.legend(title="strategy", fontsize=7)
    fig.tight_layout()
    return fig
