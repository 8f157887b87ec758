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
    # one legend for all panels: a colour per strategy and a line style per σ; two panels a row
    assert [t.get_text() for t in fig.legends[0].get_texts()][-2:] == ["σ as given", "σ' recalibrated"]
    four = pd.concat([runs, runs.assign(system="Fe"), runs.assign(system="Si")])
    assert plots.reliability_diagram(four).get_figwidth() * 130 <= 1100  # 2 × 2, not 4 side by side
    assert plots.save(fig, tmp_path / "rel.png").stat().st_size > 10_000


def _has_band(ax) -> bool:
    from matplotlib.collections import PolyCollection

    return any(isinstance(c, PolyCollection) for c in ax.collections)


def test_learning_curves_draw_dodged_error_bars_not_bands():
    from matplotlib.container import ErrorbarContainer

    fig = plots.learning_curves(_runs())
    ax = fig.axes[0]
    assert not _has_band(ax)
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert list(bars) == ["random", "uncertainty", "lcmd-feat-ll"]  # random first, underneath
    xs = {k: c.lines[0].get_xdata() for k, c in bars.items()}
    assert xs["random"][0] < xs["uncertainty"][0] < xs["lcmd-feat-ll"][0] < 15  # dodged, less than a step
    runs = _runs()
    c0 = runs[(runs["system"] == "C") & (runs["strategy"] == "random") & (runs["n_labelled"] == 10)]["mae"]
    assert np.isclose(bars["random"].lines[0].get_ydata()[0], c0.mean())
    assert "3 seeds" in ax.get_title() and "±1 std" in ax.get_title()


def test_paired_difference_by_round_matches_scipy_ttest_rel():
    from scipy import stats

    b = np.array([0.30, 0.28, 0.35, 0.31])
    s = np.array([0.25, 0.27, 0.30, 0.29])
    rows = [{"system": "C", "strategy": name, "seed": seed, "n_labelled": 10, "mae": v}
            for name, vals in (("random", b), ("uncertainty", s)) for seed, v in enumerate(vals)]
    rows += [{"system": "C", "strategy": "uncertainty", "seed": 9, "n_labelled": 10, "mae": 0.1}]  # no partner
    out = plots.paired_difference_by_round(pd.DataFrame(rows), ci=0.95)
    assert list(out.columns) == ["system", "strategy", "n_labelled", "n_pairs", "diff_pct", "diff_pct_low",
                                 "diff_pct_high"]
    row = out.iloc[0]
    assert (row["strategy"], row["n_pairs"]) == ("uncertainty", 4)
    lo, hi = stats.ttest_rel(s, b).confidence_interval(0.95)
    assert np.isclose(row["diff_pct"], 100 * (s - b).mean() / b.mean())
    assert np.isclose(row["diff_pct_low"], 100 * lo / b.mean()) and np.isclose(row["diff_pct_high"], 100 * hi / b.mean())


def test_difference_curves_one_panel_per_system_with_a_zero_line():
    runs = _runs()
    fig = plots.difference_curves(runs)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2 and axes[0].get_title().startswith("C") and "3 seeds" in axes[0].get_title()
    assert axes[0].get_ylabel() == "MAE − random's MAE (% of random)"
    zero = [ln for ln in axes[0].get_lines() if ln.get_label() == "random"]
    assert zero and set(zero[0].get_ydata()) == {0}
    assert not _has_band(axes[0])
    want = plots.paired_difference_by_round(runs)
    got = next(c for c in axes[0].containers if c.get_label() == "uncertainty").lines[0].get_ydata()
    np.testing.assert_allclose(got, want.query("system == 'C' and strategy == 'uncertainty'")["diff_pct"])


def test_uncertainty_scatter_is_log_log_and_fitted_to_the_data():
    runs = _runs()
    runs["mean_sigma"] = runs["mae"] / 300  # σ far below the MAE, as in the study
    fig = plots.uncertainty_diagnostics(runs)
    right = fig.axes[1]
    assert right.get_xscale() == right.get_yscale() == "log"
    (x0, x1), (y0, y1) = right.get_xlim(), right.get_ylim()
    s, m = runs["mean_sigma"], runs["mae"]
    assert s.min() / 2 < x0 < s.min() and s.max() < x1 < 2 * s.max()
    assert m.min() / 2 < y0 < m.min() and m.max() < y1 < 2 * m.max()
    fig.canvas.draw()
    labels = [t.get_text() for t in right.get_yticklabels() + right.get_yticklabels(minor=True)]
    assert not any("times" in t or "^" in t for t in labels)


def test_cross_database_curves_fit_1300_px_for_four_systems_two_directions():
    runs = _runs()
    four = pd.concat([runs.assign(system=f"{s}{i}") for i in range(2) for s in ("C", "Ti-O")], ignore_index=True)
    cross = pd.concat([four.assign(direction=d) for d in ("mp→oqmd", "oqmd→mp")], ignore_index=True)
    floor = pd.DataFrame({"system": ["C0", "Ti-O1"], "mae_shared": [0.05, 0.08]})
    fig = plots.cross_database_curves(cross, floor=floor)
    assert fig.get_figwidth() * 130 <= 1300
    assert len(fig.axes) == 8 and fig.axes[1].get_title().startswith("C0: train oqmd, test mp")  # row per system
    assert len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "random" and "MP vs OQMD on shared compositions" in labels
    assert any(ln.get_linestyle() == "--" for ln in fig.axes[0].get_lines())
    assert not _has_band(fig.axes[0])


def _track_b(n_seeds: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = [{"system": "offline", "batch": batch, "strategy": strategy, "seed": seed, "n_labelled": n,
             "round": n // batch, "force_mae": 0.9 * (n / 10) ** -0.5 * rng.lognormal(0, 0.05),
             "energy_mae": 0.01 * rng.lognormal(0, 0.3)}
            for batch in (10, 20) for strategy in ("maxdiag-qbc-f", "random", "lcmd-feat-ll")
            for seed in range(n_seeds) for n in range(20, 101, batch)]
    return pd.DataFrame(rows)


def test_potential_curves_say_one_seed_and_label_log_ticks_plainly():
    fig = plots.potential_curves(_track_b(1)[lambda d: d["batch"] == 10])
    ax = fig.axes[0]
    assert "(1 seed)" in ax.get_title() and "std" not in ax.get_title()
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
    assert labels and not any("times" in t or "$" in t for t in labels)
    assert {"0.3", "0.4"} <= set(labels)  # the force MAE runs 0.2–0.6
    assert [c.get_label() for c in ax.containers] == ["random", "lcmd-feat-ll", "maxdiag-qbc-f"]
    fig3 = plots.potential_curves(_track_b(3))
    assert "(3 seeds, bars = ±1 std)" in fig3.axes[0].get_title()


def test_track_b_figures_use_the_shared_palette_random_first():
    runs = _track_b(3)
    pal = plots.strategy_palette(runs["strategy"])
    for fig in (plots.potential_curves(runs), plots.error_vs_batch(runs)):
        ax = fig.axes[0]
        got = {c.get_label(): c.lines[0].get_color() for c in ax.containers}
        assert next(iter(got)) == "random" and got == pal
        assert not _has_band(ax)


def test_save_writes_atomically_and_shows_the_figure_only_in_a_kernel(tmp_path, monkeypatch):
    import IPython
    import IPython.display
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append((obj, kw)))

    fig = plots.learning_curves(_runs())
    path = plots.save(fig, tmp_path / "lc.png")  # pytest: no kernel, nothing shown
    assert shown == [] and not plt.fignum_exists(fig.number)
    assert [p.name for p in tmp_path.iterdir()] == ["lc.png"]  # no temporary file left behind

    class Shell:  # what get_ipython() returns in a notebook: a shell with a kernel
        kernel = object()

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    fig = plots.learning_curves(_runs())
    path = plots.save(fig, tmp_path / "sub" / "lc2.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shown == [(fig, {"metadata": {"alhelpers": {"saved_as": "lc2.png"}}})]
    assert not plt.fignum_exists(fig.number)
    plots.save(plots.learning_curves(_runs()), tmp_path / "lc3.png", show=False)
    assert len(shown) == 1

    class Terminal:  # terminal IPython: a shell, no kernel
        pass

    monkeypatch.setattr(IPython, "get_ipython", lambda: Terminal())
    plots.save(plots.learning_curves(_runs()), tmp_path / "lc4.png")
    assert len(shown) == 1
