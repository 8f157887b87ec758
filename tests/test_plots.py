"""Figures: drawn from tidy frames, non-empty, one colour per strategy everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alhelpers import plots


def _runs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for system in ("C", "Ti-O"):
        for strategy in ("random", "uncertainty", "lcmd-feat-ll"):
            for seed in range(3):
                for rnd, n in enumerate((10, 15, 20)):
                    mae = 0.3 / (1 + rnd) + rng.uniform(0, 0.02)
                    rows.append(dict(system=system, strategy=strategy, seed=seed, round=rnd, n_labelled=n,
                                     mae=mae, mean_sigma=mae / 3, spearman_sigma_abs_err=rng.uniform(-0.2, 0.5)))
    return pd.DataFrame(rows)


def test_palette_fixed_for_study_strategies_and_stable_for_others():
    a = plots.strategy_palette(["hybrid", "random", "lcmd-feat-ll"])
    b = plots.strategy_palette(["random", "lcmd-feat-ll", "maxdet-gp-ll", "hybrid"])
    assert a["random"] == b["random"] == plots.BASE_COLOURS["random"]
    assert a["hybrid"] == plots.BASE_COLOURS["hybrid"] and a["lcmd-feat-ll"] == b["lcmd-feat-ll"]
    assert len(set(b.values())) == 4


def test_every_figure_is_written(tmp_path):
    runs = _runs()
    final = (runs[runs["round"] == 2].groupby(["system", "strategy"])["mae"]
             .agg(mae_mean="mean", mae_std="std").reset_index())
    cross = runs.assign(direction="mp→oqmd")
    floor = pd.DataFrame({"system": ["C"], "mae_shared": [0.05]})
    figs = {
        "lc": plots.learning_curves(runs),
        "bars": plots.final_bars(final),
        "unc": plots.uncertainty_diagnostics(runs),
        "cross": plots.cross_database_curves(cross, floor=floor),
    }
    assert len(figs["lc"].axes) >= 2 and figs["lc"].axes[0].get_xlabel() == plots.N_LABEL
    for name, fig in figs.items():
        path = plots.save(fig, tmp_path / f"{name}.png")
        assert path.stat().st_size > 10_000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reliability_diagram_draws_the_seed_mean_of_the_final_round(tmp_path):
    from alhelpers.calibration import RELIABILITY_COLUMNS, RELIABILITY_LEVELS

    runs = _runs()
    p = np.array(RELIABILITY_LEVELS)
    for c, v in zip(RELIABILITY_COLUMNS, [*0.5 * p, *p], strict=True):  # raw: over-confident; σ': calibrated
        runs[c] = v + 0.01 * runs["seed"]
    fig = plots.reliability_diagram(runs)
    assert len(fig.axes) == 2 and [a.get_title() for a in fig.axes] == ["C", "Ti-O"]
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    raw = lines["random (σ)"].get_ydata()
    np.testing.assert_allclose(raw, [0.0, *(0.5 * p + 0.01), 1.0])  # seeds 0, 1, 2: mean offset 0.01
    np.testing.assert_allclose(lines["random (σ')"].get_ydata(), [0.0, *(p + 0.01), 1.0])
    assert plots.save(fig, tmp_path / "rel.png").stat().st_size > 10_000
