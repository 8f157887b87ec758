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
    assert lines[0] == ("No strategy beats random after Holm correction over all 3 paired tests in this table "
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
    assert lines[0].startswith(f"Better than random after Holm correction over the 1 paired test in this table "
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
            and "mean squared z-score (1 when calibrated) is C 122, Fe 9" in said and "z² is 0.90–1.10" in said)
    assert ("Cross-database, Ti-O mp→oqmd: pool exhausted: all 45 pool points are labelled; stopped before the "
            "requested 105 labels. Every strategy ends with the same 45 labelled materials") in said
    assert "Across databases (train on one, test on the other): no strategy beats random" in said
    assert "| `diversity` | k-means on the descriptors" in report and "| `random` | uniformly at random" in report
    assert "| wall time | 10.0 min" in report and "| jobs | 2 |" in report
    assert re.search(r"\| code: commit \| [0-9a-f]{12}(\+dirty)? \|", report)
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
