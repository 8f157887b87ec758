"""The study report: its conclusion follows the final table, its HTML carries its figures, its
configuration names the code, data and machine; the verdicts in words and the intervals behind them."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from alhelpers import stats
from alhelpers.report import write_report

RANDOM = np.array([1.00, 1.10, 0.90, 1.00, 1.05])
#: Added to random's final MAE per seed: a clear, consistent +30 % (d_z ≈ 27)
WORSE = np.array([0.30, 0.31, 0.29, 0.30, 0.32])
#: Hand-picked so that the paired p (0.033) is below 0.05 but the Holm p (the second smallest of three: × 2) is not
SHAKY = np.array([0.10, 0.03, 0.08, 0.15, 0.02])
#: Noise around zero: a large p, the third of the Holm family
NOISE = np.array([0.05, -0.05, 0.02, -0.03, 0.01])


def _runs(offsets: dict[str, np.ndarray], system: str = "C") -> pd.DataFrame:
    rows = []
    for strategy, add in {"random": np.zeros(5), **offsets}.items():
        for seed in range(5):
            for rnd, n in enumerate((30, 45)):
                mae = (RANDOM[seed] + add[seed]) * (1.2 if rnd == 0 else 1.0)
                rows.append({"system": system, "descriptor": "magpie", "strategy": strategy, "seed": seed,
                             "round": rnd, "n_labelled": n, "mae": mae, "r2": 0.5, "note": ""})
    return pd.DataFrame(rows)


def _ci_pct(add: np.ndarray) -> tuple[float, float]:
    low, high = sps.ttest_rel(RANDOM + add, RANDOM).confidence_interval(0.95)
    return 100 * low / RANDOM.mean(), 100 * high / RANDOM.mean()


def _conclusion(report: str) -> list[str]:
    block = report.split("## Conclusion\n\n", 1)[1].split("\n\n", 1)[0]
    return [line[2:] for line in block.splitlines()]


def test_final_table_intervals_agree_with_scipy_and_findings_say_direction_and_correction():
    final = stats.final_table(_runs({"uncertainty": WORSE, "hybrid": SHAKY, "diversity": NOISE}))
    row = final.set_index("strategy")
    low, high = sps.ttest_rel(RANDOM + WORSE, RANDOM).confidence_interval(0.95)
    assert row.loc["uncertainty", "diff_low"] == pytest.approx(low, rel=1e-12)
    assert row.loc["uncertainty", "diff_high"] == pytest.approx(high, rel=1e-12)
    assert (row.loc["uncertainty", "diff_pct_low"], row.loc["uncertainty", "diff_pct_high"]) == pytest.approx(
        _ci_pct(WORSE), rel=1e-12)
    assert row.loc["uncertainty", "finding"] == "worse, significant"
    p = sps.ttest_rel(RANDOM + SHAKY, RANDOM).pvalue
    assert 0.01 < p < 0.05 and row.loc["hybrid", "p_holm"] == pytest.approx(2 * p) and 2 * p > 0.05
    assert row.loc["hybrid", "verdict"] == "similar"  # the test's decision stays as it was …
    assert row.loc["hybrid", "finding"] == "worse, not significant after correction"  # … and says why
    assert row.loc["random", "finding"] == "baseline" and np.isnan(row.loc["random", "diff_pct_low"])
    # the words on their own, case by case
    assert stats.finding("similar", -0.2, 0.3) == "better, not significant"
    assert stats.finding("similar", 0.2, 0.3, higher_is_better=True) == "better, not significant"
    assert stats.finding("similar", 0.0, float("nan")) == "no difference"
    assert stats.finding("n/a", 0.1, float("nan")) == "cannot be tested with fewer than 2 paired seeds"
    assert stats.finding("n/a", 0.1, float("nan"), n_pairs=1) == "cannot be tested with 1 seed"
    assert stats.finding("better", -0.1, 0.001) == "better, significant"


def test_report_opens_with_a_conclusion_that_follows_the_final_table(tmp_path):
    final = stats.final_table(_runs({"uncertainty": WORSE, "hybrid": SHAKY, "diversity": NOISE}))
    final.to_csv(tmp_path / "final_table.csv", index=False)
    report = write_report(tmp_path).read_text()
    assert report.splitlines()[:3] == ["# Active learning for formation energy: study report", "", "## Conclusion"]
    lines = _conclusion(report)
    assert len(lines) == 3
    assert lines[0] == ("No strategy beats random after Holm correction over all 3 paired tests in this report "
                        "(α = 0.05; 3 strategies in 1 system, 5 paired seeds each).")
    lo, hi = _ci_pct(WORSE)
    p_holm = final.set_index("strategy").loc["uncertainty", "p_holm"]
    assert lines[1].startswith(f"Worse than random (MAE, significant after correction): uncertainty on C, "
                               f"+{100 * WORSE.mean() / RANDOM.mean():.1f} % (95 % CI +{lo:.1f} … +{hi:.1f} %), "
                               f"Holm p = {p_holm:.1e}.")
    assert "Worse than random before, but not after, the Holm correction: hybrid on C" in lines[1]
    assert lines[2].startswith("With 5 seeds these comparisons could detect differences of")

    # change the table: the strategy now has a 30 % lower MAE, and the sentence follows
    final = stats.final_table(_runs({"uncertainty": -WORSE, "hybrid": np.zeros(5)}))
    final.to_csv(tmp_path / "final_table.csv", index=False)
    lines = _conclusion(write_report(tmp_path).read_text())
    lo, hi = _ci_pct(-WORSE)
    assert lines[0].startswith(f"Better than random after Holm correction over the 1 paired test in this report "
                               f"(α = 0.05): uncertainty on C, "
                               f"{100 * -WORSE.mean() / RANDOM.mean():+.1f} % (95 % CI {lo:+.1f} … {hi:+.1f} %)")
    assert lines[1] == ("No strategy is significantly worse than random; the largest difference, uncertainty on C "
                        f"at {100 * -WORSE.mean() / RANDOM.mean():+.1f} % (95 % CI {lo:+.1f} … {hi:+.1f} %), "
                        "is not significant.")


def test_report_states_strategies_diagnoses_and_configuration(tmp_path):
    runs = pd.concat([_runs({"uncertainty": WORSE, "diversity": np.zeros(5)}), _runs({}, system="Fe")])
    runs["mean_sigma"] = runs["mae"] / np.where(runs["system"] == "C", 20.0, 4.0)
    runs.to_parquet(tmp_path / "runs.parquet")
    stats.final_table(runs).to_csv(tmp_path / "final_table.csv", index=False)
    cal = pd.DataFrame({"system": ["C", "C", "Fe"], "strategy": ["random", "uncertainty", "random"],
                        "n_labelled": [45, 45, 45], "z2_mean": [100.0, 144.0, 9.0], "z2_mean_cal": [0.8, 1.0, 1.1],
                        "mae": [1.0, 1.3, 1.0], "pred_ratio": [1.1, 1.2, 0.9]})
    cal.to_csv(tmp_path / "calibration.csv", index=False)
    cross = _runs({"uncertainty": np.zeros(5)}, system="Ti-O").assign(direction="mp→oqmd")
    cross["note"] = np.where(cross["round"] == 1, "pool exhausted: all 45 pool points are labelled; stopped before "
                                                  "the requested 105 labels", "")
    (tmp_path / "cross").mkdir()
    cross.to_parquet(tmp_path / "cross" / "Ti-O_magpie.parquet")
    report = write_report(tmp_path, config={"jobs": 2}, wall_s=600.0).read_text()
    said = report.split("## The strategies", 1)[0]
    # σ over-confident: the final-round test MAE over mean σ (median over strategies and seeds)
    assert ("over-confident in every system: in the final round its test MAE is C 20×, Fe 4.0× its mean σ" in said
            and "mean squared z-score (1 when calibrated) is C 122, Fe 9 (median over strategies; per strategy from 9 "
                "(random on Fe) to 144 (uncertainty on C))." in said
            and "Recalibrated by cross-validation on the labelled materials alone (σ'), the mean squared z-score at "
                "the compared budget (mean over seeds; 1 when calibrated) ranges over the 3 pairs of system and "
                "strategy from 0.8 (random on C) to 1.1 (random on Fe); calibrated (z² within 0.5–2): 3 of 3." in said)
    assert ("Cross-database, Ti-O mp→oqmd: pool exhausted: all 45 pool points are labelled; stopped before the "
            "requested 105 labels. Every strategy ends with the same 45 labelled materials") in said
    assert "Across databases (train on one, test on the other): no strategy beats random" in said
    assert "| `diversity` | k-means on the descriptors" in report and "| `random` | uniformly at random" in report
    assert "| wall time | 10.0 min" in report and "| jobs | 2 |" in report
    assert ("| code: id | unknown (the tables record no code id: they were made before code ids were recorded) |"
            in report)
    for package in ("scipy", "statsmodels", "seaborn", "torch", "numpy"):
        assert re.search(rf"\| {package} \| \S+ \|", report), package
    assert "| snapshot/flla_2015 | b2993856667f6144 |" in report  # the snapshot manifest's sha256
    assert "The same paired statistics as the final table, per system and direction" in report


def test_html_report_embeds_its_figures(tmp_path):
    stats.final_table(_runs({"uncertainty": WORSE})).to_csv(tmp_path / "final_table.csv", index=False)
    (tmp_path / "figures").mkdir()
    png = {}
    for name in ("learning_curves.png", "reliability.png"):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [0, 1])
        fig.savefig(tmp_path / "figures" / name)
        plt.close(fig)
        png[name] = base64.b64encode((tmp_path / "figures" / name).read_bytes()).decode()
    md = write_report(tmp_path)
    html = md.with_suffix(".html").read_text()
    assert "figures/learning_curves.png" in md.read_text()
    assert 'src="figures/' not in html  # nothing points to a file beside it
    for data in png.values():
        assert f'src="data:image/png;base64,{data}"' in html
    assert "<h2>Conclusion</h2>" in html and "<table>" in html


def test_provenance_names_the_commit_the_machine_and_the_files(tmp_path):
    import hashlib
    import os
    import subprocess

    from alhelpers.provenance import code_version, data_hashes, machine

    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()
    assert code_version()["commit"].split("+")[0] == head
    assert code_version(tmp_path)["commit"] == "unknown"  # not a checkout: said, not guessed
    assert machine()["cores"] == str(os.cpu_count())
    feature = tmp_path / "data" / "features" / "snapshot" / "magpie" / "C.parquet"
    feature.parent.mkdir(parents=True)
    feature.write_bytes(b"not really parquet")
    hashes = data_hashes(tmp_path)
    assert hashes["data/features/snapshot/magpie/C.parquet"] == hashlib.sha256(b"not really parquet").hexdigest()[:16]
    assert set(hashes) >= {"snapshot/flla_2015", "snapshot/qmpy_legacy", "snapshot/qmpy_mat_proj"}


# --------------------------------------------------------------------------- the claim, in the conclusion

def _savings_table() -> pd.DataFrame:
    """A hand-made savings.csv: random's rows, then every kind of result against the 5–13 % claim."""
    cols = ["system", "descriptor", "strategy", "budget_frac", "n_pairs", "n_stopped", "n_target", "target",
            "n_baseline", "n_reach", "reached", "saving_pct", "saving_lo", "saving_hi", "reach_frac"]
    nan = float("nan")
    rows = [("Si", "random", 1.0, 5, 105, 0.2, 105, 105, True, 0.0, 0.0, 0.0, 1.0),
            ("Si", "uncertainty", 0.5, 5, 67.5, 0.3, 67.5, 62.1, True, 8.0, 2.0, 14.0, 1.0),        # supports
            ("Si", "uncertainty", 0.75, 5, 86.25, 0.25, 86.25, 103.5, True, -20.0, -39.0, -1.2, 0.9),  # more labels
            ("Si", "uncertainty", 1.0, 5, 105, 0.2, 105, 102.9, True, 2.0, 0.5, 3.5, 1.0),          # below claim
            ("C", "random", 1.0, 5, 105, 0.3, 105, 105, True, 0.0, 0.0, 0.0, 1.0),
            ("C", "diversity", 0.5, 5, 67.5, 0.4, 67.5, 69.5, True, -3.0, -15.0, 9.0, 0.8),         # inconclusive
            ("C", "diversity", 0.75, 5, 86.25, 0.35, 86.25, nan, False, nan, nan, nan, 0.3),        # never
            ("C", "diversity", 1.0, 5, 105, 0.3, 105, nan, False, nan, nan, nan, 0.1),              # never
            ("Fe", "hybrid", 1.0, 5, 105, 0.1, 105, 78.75, True, 25.0, 15.0, 35.0, 1.0),            # above claim
            ("Ti-O", "hybrid", 1.0, 1, 105, 0.1, 105, 94.5, True, 10.0, nan, nan, nan)]             # one seed
    return pd.DataFrame([(r[0], "magpie", *r[1:4], 0, *r[4:]) for r in rows], columns=cols)


def test_conclusion_states_the_savings_against_the_claim(tmp_path):
    stats.final_table(_runs({"uncertainty": WORSE})).to_csv(tmp_path / "final_table.csv", index=False)
    _savings_table().to_csv(tmp_path / "savings.csv", index=False)
    report = write_report(tmp_path).read_text()
    lines = _conclusion(report)
    assert lines[3:] == [
        "Label savings against the claim of 5–13 % fewer labels than random (the labels each strategy needs to "
        "reach random's mean MAE at 50 %, 75 % and 100 % of its budget; 95 % interval over seeds): of 8 "
        "comparisons, 2 support it, 4 contradict it, 1 cannot tell (the interval contains 0 and reaches 5–13 %), "
        "1 cannot be tested with too few seeds.",
        "Support the claim (interval above 0 and overlapping 5–13 %): uncertainty on Si at 50 %, +8.0 % "
        "(95 % CI +2.0 … +14.0 %). Save more than claimed (interval above 13 %): hybrid on Fe at 100 %, +25.0 % "
        "(95 % CI +15.0 … +35.0 %). Need more labels than random (interval below 0): uncertainty on Si at 75 %, "
        "-20.0 % (95 % CI -39.0 … -1.2 %). Exclude the claim from below (interval below 5 %, not below 0): "
        "uncertainty on Si at "
        "100 %, +2.0 % (95 % CI +0.5 … +3.5 %). Never reach random's target within the budget (on the mean "
        "curve over seeds): diversity on C (at 75 % and 100 %). Cannot be tested with 1 seed: hybrid on Ti-O "
        "at 100 %."]


def _calibrated_runs() -> pd.DataFrame:
    """Si and C, random and diversity, seeds 0–1, rounds at 30 and 45 labels, with the recalibrated
    σ''s reliability columns: observed fraction inside the central interval of probability p."""
    from alhelpers.calibration import RELIABILITY_LEVELS

    coverage = {("Si", "random"): lambda p: p, ("Si", "diversity"): lambda p: p - 0.1,
                ("C", "random"): lambda p: min(p + 0.2, 1.0), ("C", "diversity"): lambda p: p + 0.1}
    rows = []
    for (system, strategy), cover in coverage.items():
        for seed in (0, 1):
            for rnd, n in enumerate((30, 45)):
                row = {"system": system, "descriptor": "magpie", "strategy": strategy, "seed": seed, "round": rnd,
                       "n_labelled": n, "mae": 0.2 + 0.01 * seed + 0.05 * (1 - rnd) + 0.01 * (strategy == "diversity"),
                       "r2": 0.8, "note": ""}
                row.update({f"rel_cal_{round(100 * p)}": cover(p) for p in RELIABILITY_LEVELS})
                rows.append(row)
    return pd.DataFrame(rows)


def test_conclusion_states_the_recalibration_per_strategy_where_it_overshoots_and_where_it_is_far(tmp_path):
    runs = _calibrated_runs()
    runs.to_parquet(tmp_path / "runs.parquet")
    stats.final_table(runs).to_csv(tmp_path / "final_table.csv", index=False)
    z2 = {("Si", "random"): (50.0, 1.2), ("Si", "diversity"): (3000.0, 1110.0), ("C", "random"): (40.0, 0.3),
          ("C", "diversity"): (500.0, 135.0)}
    cal = pd.DataFrame([{"system": s, "descriptor": "magpie", "strategy": k, "n_labelled": n, "n_seeds": 2,
                         "mae": 0.2, "mae_pred": 0.2, "pred_ratio": 1.0, "z2_mean": raw * (2 if n == 30 else 1),
                         "z2_mean_cal": recal * (2 if n == 30 else 1)}
                        for (s, k), (raw, recal) in z2.items() for n in (30, 45)])
    cal.to_csv(tmp_path / "calibration.csv", index=False)
    report = write_report(tmp_path).read_text()
    said = [line[2:] for line in report.split("## The strategies")[0].splitlines() if "z-score" in line]
    assert said == [
        "The ensemble's uncertainty is over-confident: mean squared z-score (1 when calibrated) Si 1,525, C 270 "
        "(median over strategies; per strategy from 40 (random on C) to 3,000 (diversity on Si)). Recalibrated by "
        "cross-validation on the labelled materials alone (σ'), the mean squared z-score at the compared budget "
        "(mean over seeds; 1 when calibrated) ranges over the 4 pairs of system and strategy from 0.3 (random on C) "
        "to 1,110 (diversity on Si); calibrated (z² within 0.5–2 and its central intervals holding their "
        "probability within 5 points on average): 1 of 4. Still over-confident (σ' too small): diversity on Si "
        "(z² 1,110; its 50 % and 90 % intervals hold 40 % and 80 % of the test errors). Over-corrected: σ' now "
        "too large, its intervals too wide: random on C (z² 0.3; its 50 % and 90 % intervals hold 70 % and 100 % "
        "of the test errors). Too wide for most errors and too small for the largest (a few large errors dominate "
        "z²): diversity on C (z² 135; its 50 % and 90 % intervals hold 60 % and 100 % of the test errors)."]


def test_report_says_how_sigma_was_recalibrated_by_the_runs_own_configuration(tmp_path):
    # CALIBRATION = "batches" fits σ' on the queried batches' predictions: the report must not say
    # "cross-validation" for it, in the conclusion or above the calibration table
    import json

    runs = _calibrated_runs()
    runs.to_parquet(tmp_path / "runs.parquet")
    stats.final_table(runs).to_csv(tmp_path / "final_table.csv", index=False)
    pd.DataFrame([{"system": "Si", "descriptor": "magpie", "strategy": "random", "n_labelled": 45, "n_seeds": 2,
                   "mae": 0.2, "mae_pred": 0.2, "pred_ratio": 1.0, "z2_mean": 50.0, "z2_mean_cal": 1.2}]
                 ).to_csv(tmp_path / "calibration.csv", index=False)
    cv = write_report(tmp_path).read_text()  # no configuration recorded: results of before the choice
    assert cv.count("by cross-validation on the labelled materials alone") == 2
    (tmp_path / "study.json").write_text(json.dumps({"protocol": {"calibration": "batches"}}))
    report = write_report(tmp_path).read_text()
    batches = ("on the predictions each round made for the materials it then queried, before their labels existed "
               "(round 0: a cross-validation of the initial set)")
    assert "cross-validation on the labelled" not in report
    assert f"Recalibrated {batches} (σ'), the mean squared z-score" in report
    assert f"`sigma_floor` τ fitted {batches}, never on the test set." in report
    assert "| calibration | batches |" in report
    # the default "cv-final": cross-validation in the final round (the one the report compares at), the
    # batches' predictions in the rounds before it
    (tmp_path / "study.json").write_text(json.dumps({"protocol": {"calibration": "cv-final"}}))
    report = write_report(tmp_path).read_text()
    final = ("by cross-validation on the labelled materials alone in the final round (in the rounds before it, on "
             "the predictions each round made for the materials it then queried, before their labels existed)")
    assert f"Recalibrated {final} (σ'), the mean squared z-score" in report
    assert f"`sigma_floor` τ fitted {final}, never on the test set." in report
    assert "| calibration | cv-final |" in report
    (tmp_path / "study.json").write_text(json.dumps({"protocol": {"calibration": "oob"}}))
    with pytest.raises(ValueError, match="unknown σ recalibration 'oob'"):
        write_report(tmp_path)


#: Lower than random on every seed: paired p ≈ 0.003, below α/3 (its own system and direction's Holm
#: family of 3) but not below α/27 (every paired test of the report)
STRONG = -np.array([0.10, 0.06, 0.08, 0.12, 0.05])


def test_conclusion_corrects_over_every_paired_test_it_reports(tmp_path):
    rng = np.random.default_rng(7)
    noise = {}

    def offsets(key):
        noise[key] = STRONG if key == ("Fe", "mp→oqmd", "uncertainty") else rng.normal(0.0, 0.03, 5)
        return noise[key]

    strategies = ("uncertainty", "diversity", "hybrid")
    stats.final_table(_runs({s: offsets(("C", "", s)) for s in strategies})).to_csv(
        tmp_path / "final_table.csv", index=False)
    (tmp_path / "cross").mkdir()
    for system in ("C", "Si", "Fe", "Ti-O"):
        cross = pd.concat([_runs({s: offsets((system, d, s)) for s in strategies}, system=system).assign(direction=d)
                           for d in ("mp→oqmd", "oqmd→mp")], ignore_index=True)
        cross.to_parquet(tmp_path / "cross" / f"{system}_magpie.parquet")
    # every paired test, by scipy; one Holm family over all 27
    p = {k: sps.ttest_rel(RANDOM + d, RANDOM).pvalue for k, d in noise.items()}
    assert sum(v < 0.05 for v in p.values()) == 1 and len(p) == 27
    holm = dict(zip(p, multipletests(list(p.values()), method="holm")[1], strict=True))
    strong = ("Fe", "mp→oqmd", "uncertainty")
    assert p[strong] * 3 < 0.05 < holm[strong]  # "better" in its own family of 3, not in the report's
    report = write_report(tmp_path).read_text()
    lines = _conclusion(report)
    assert lines[0] == ("No strategy beats random after Holm correction over all 27 paired tests in this report "
                        "(α = 0.05; 3 strategies in 1 system, 5 paired seeds each).")
    lo, hi = _ci_pct(STRONG)
    across = [line for line in report.splitlines() if line.startswith("- Across databases")]
    assert across == [
        "- Across databases (train on one, test on the other): no strategy beats random after Holm correction over "
        "all 27 paired tests in this report (α = 0.05; 3 strategies in 8 settings, 5 paired seeds each). Better "
        f"than random before, but not after, the Holm correction: uncertainty on Fe (mp→oqmd), "
        f"{100 * STRONG.mean() / RANDOM.mean():+.1f} % (95 % CI {lo:+.1f} … {hi:+.1f} %), "
        f"Holm p = {holm[strong]:.3f}."]
    # the cross-database table itself keeps its family of 3, and says so
    assert "`p_holm` corrected across the strategies within each system and direction" in report
    table = report.split("The same paired statistics as the final table", 1)[1]
    row = next(line for line in table.splitlines() if line.startswith("| Fe       | mp→oqmd     | uncertainty"))
    assert row.split("|")[-2].strip() == "better, significant"


# --------------------------------------------------------------------------- runs that stopped early

STOP_NOTE = ("stopped: predicted test MAE {:.4g} eV/atom is at or below TARGET_MAE = 0.33 eV/atom "
             "(calibrated σ of the pool)")


def _curves(curves: dict, system: str) -> pd.DataFrame:
    """Runs from {strategy: {seed: [MAE per round]}}, n_labelled = 10 + 5·round; a run shorter than
    the others stopped under the stopping rule (its last row says so)."""
    rows = []
    longest = max(len(c) for per_seed in curves.values() for c in per_seed.values())
    for strategy, per_seed in curves.items():
        for seed, curve in per_seed.items():
            for rnd, mae in enumerate(curve):
                stop = len(curve) < longest and rnd == len(curve) - 1
                rows.append({"system": system, "descriptor": "magpie", "strategy": strategy, "seed": seed,
                             "round": rnd, "n_labelled": 10 + 5 * rnd, "mae": mae, "r2": 0.5,
                             "note": STOP_NOTE.format(mae * 0.9) if stop else ""})
    return pd.DataFrame(rows)


def test_report_says_which_runs_stopped_where_and_why_and_the_budget_compared(tmp_path):
    from alhelpers.curves import label_savings

    tio2 = _curves({"random": {0: [0.50, 0.40, 0.35, 0.30], 1: [0.52, 0.36], 2: [0.48, 0.41, 0.36, 0.31]},
                    "uncertainty": {0: [0.50, 0.38, 0.33], 1: [0.52, 0.37, 0.34, 0.30], 2: [0.48, 0.39, 0.35, 0.30]}},
                   "Ti-O")
    carbon = _curves({"random": {0: [0.9, 0.8, 0.7], 1: [0.8, 0.75, 0.7]},
                      "uncertainty": {0: [0.9], 1: [0.8, 0.7, 0.6]}}, "C")
    runs = pd.concat([tio2, carbon], ignore_index=True)
    runs.to_parquet(tmp_path / "runs.parquet")
    final = stats.final_table(runs)
    final.to_csv(tmp_path / "final_table.csv", index=False)
    label_savings(runs, n_boot=50, rng=np.random.default_rng(0)).to_csv(tmp_path / "savings.csv", index=False)
    report = write_report(tmp_path).read_text()
    block = report.split("## Conclusion\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block[:2] == [
        "- Ti-O: 2 of 6 runs stopped before the others (random in seed 1 at 15 labels; uncertainty in seed 0 at 20 "
        "labels), because of the stopping rule (predicted test MAE at or below TARGET_MAE = 0.33 eV/atom). The final "
        "table, the label savings and the areas under the curve compare every strategy of Ti-O at 15 labels, the "
        "largest budget every run reached (the longest run reached 25).",
        "- C: 1 of 4 runs stopped before the others (uncertainty in seed 0 at 10 labels), because of the stopping "
        "rule (predicted test MAE at or below TARGET_MAE = 0.33 eV/atom). The final table, the label savings and the "
        "areas under the curve compare every strategy of C at 10 labels, the largest budget every run reached (the "
        "longest run reached 20). At 10 labels no strategy has queried yet: this comparison cannot tell the "
        "strategies apart."]
    stopped = report.split("## Runs that stopped early", 1)[1].split("\n## ", 1)[0]
    assert (f"| Ti-O     | magpie       | random      |      1 |       1 |           15 | "
            f"{STOP_NOTE.format(0.36 * 0.9)} |") in stopped
    assert final.set_index(["system", "strategy"]).loc[("Ti-O", "random"), "n_labelled"] == 15
    header = report.split("## Final round", 1)[1].split("\n\n")[2].splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")][:5] == ["system", "strategy", "n_labelled", "n_stopped",
                                                                      "n_pairs"]
    assert ("- No saving can be measured on C (at 10 labels): the budget every run reached is a single point, with "
            "no labelling to save on.") in block


# --------------------------------------------------------------------------- the code that computed the numbers

def _study_tables(folder: Path, ids: dict[str, str | None]) -> None:
    """runs.parquet, final_table.csv, savings.csv and a cross-database file, each with the code id of
    ``ids`` (by file name; ``None``: no code_id column, as tables made before code ids were recorded)."""
    from alhelpers.curves import label_savings

    runs = _runs({"uncertainty": WORSE})
    cross = _runs({"uncertainty": WORSE}, system="Ti-O").assign(direction="mp→oqmd")
    tables = {"runs.parquet": runs, "final_table.csv": stats.final_table(runs),
              "savings.csv": label_savings(runs, n_boot=20, rng=np.random.default_rng(0), fractions=(1.0,)),
              "cross/Ti-O_magpie.parquet": cross}
    (folder / "cross").mkdir(exist_ok=True)
    for name, table in tables.items():
        if ids.get(name) is not None:
            table = table.assign(code_id=ids[name])
        path = folder / name
        table.to_parquet(path) if name.endswith(".parquet") else table.to_csv(path, index=False)


def test_report_refuses_tables_of_different_code(tmp_path):
    _study_tables(tmp_path, {"runs.parquet": "aaaaaaaaaaaa", "final_table.csv": "aaaaaaaaaaaa",
                             "savings.csv": "bbbbbbbbbbbb", "cross/Ti-O_magpie.parquet": None})
    with pytest.raises(ValueError) as err:
        write_report(tmp_path)
    assert str(err.value) == (
        f"the tables of {tmp_path} were computed by different code, so a report would mix their numbers: "
        "code id aaaaaaaaaaaa: runs.parquet, final_table.csv; code id bbbbbbbbbbbb: savings.csv; no code id (made "
        "before code ids were recorded): cross/Ti-O_magpie.parquet. Rerun `python -m alhelpers.run study` with the "
        "same arguments (it reruns what the code change affects), or notebooks 03 and 04 (and 06 for cross/), then "
        "write the report again.")
    assert not (tmp_path / "report.md").exists()


def _code_rows(report: str) -> dict[str, str]:
    rows = [line.split("|")[1:3] for line in report.splitlines() if line.startswith("| code: ")]
    return {k.strip(): v.strip() for k, v in rows}


def test_report_names_the_code_of_its_tables_and_the_commit_only_when_it_is_this_checkout(tmp_path):
    from alhelpers.provenance import code_id, code_version

    here, commit = code_id(), code_version()["commit"]
    every = ("runs.parquet", "final_table.csv", "savings.csv", "cross/Ti-O_magpie.parquet")
    _study_tables(tmp_path, dict.fromkeys(every, here))
    rows = _code_rows(write_report(tmp_path).read_text())
    assert rows["code: id"] == f"{here} (every table's, and this checkout's)" and rows["code: commit"] == commit
    other = "0123456789ab"
    _study_tables(tmp_path, dict.fromkeys(every, other))
    rows = _code_rows(write_report(tmp_path).read_text())
    assert rows["code: id"] == f"{other} (every table's)"
    assert rows["code: commit"] == (f"unknown: the tables were computed by code {other}; this checkout is code {here} "
                                    f"(commit {commit})")
    _study_tables(tmp_path, dict.fromkeys(every, None))  # a folder from before code ids
    rows = _code_rows(write_report(tmp_path).read_text())
    assert rows["code: id"] == "unknown (the tables record no code id: they were made before code ids were recorded)"
    assert rows["code: commit"].startswith(f"unknown (this checkout, code id {here}, commit {commit}, may not be")


# --------------------------------------------------------------------------- one seed; missing values

def test_report_of_one_seed_tests_nothing_and_prints_no_nan(tmp_path):
    from alhelpers.curves import label_savings, learning_curve_auc

    runs = pd.concat([_runs({"uncertainty": WORSE, "diversity": NOISE}), _runs({"uncertainty": -WORSE}, system="Si")])
    runs = runs[runs["seed"] == 0]
    runs.to_parquet(tmp_path / "runs.parquet")
    stats.final_table(runs).to_csv(tmp_path / "final_table.csv", index=False)
    label_savings(runs, n_boot=50, rng=np.random.default_rng(0)).to_csv(tmp_path / "savings.csv", index=False)
    learning_curve_auc(runs, n_boot=50, rng=np.random.default_rng(0)).to_csv(tmp_path / "auc.csv", index=False)
    report = write_report(tmp_path).read_text()
    pct = {name: f"{100 * add[0] / RANDOM[0]:+.1f} %" for name, add in
           (("uncertainty", WORSE), ("diversity", NOISE), ("si", -WORSE))}
    assert _conclusion(report)[:3] == [
        "No comparison with random can be tested with 1 seed (a paired test needs 2 or more): 2 strategies in 2 "
        "systems.",
        f"Observed on that seed alone, without a test or an interval: uncertainty on C {pct['uncertainty']}; "
        f"diversity on C {pct['diversity']}; uncertainty on Si {pct['si']}.",
        "With 1 paired seed the power of these comparisons cannot be estimated (3 or more are needed)."]
    assert _conclusion(report)[3].endswith("of 9 comparisons, 0 support it, 0 contradict it, 0 cannot tell (the "
                                           "interval contains 0 and reaches 5–13 %), 9 cannot be tested with too "
                                           "few seeds.")
    assert not re.search(r"\bnan\b", report, flags=re.IGNORECASE)
    assert "± 0.0" not in report and "0.0000" not in report
    assert "random reaches MAE 1 (1 seed: no spread, no test)." in report
    auc = report.split("## Area under the learning curve", 1)[1]
    first = next(line for line in auc.splitlines() if line.startswith("| C "))
    assert [c.strip() for c in first.strip("|").split("|")][7:9] == ["—", "—"]  # auc_lo, auc_hi
    assert LEGEND_AUC in auc


LEGEND_AUC = "— : a single seed: no interval and no spread (a bootstrap over one seed only repeats it)."
