"""The study report: one Markdown file next to the results, built only from the result tables,
and the same report as one HTML file with its figures embedded, to send as it is.

It opens with its conclusion — sentences computed from the final table
(:func:`alhelpers.stats.conclusion_lines`), never written by hand — then what else the tables say
in words (cross-database transfer, calibration, pool exhaustion), the strategies in plain words,
the tables, the figures and the full configuration: protocol, model, code version, data hashes,
date, wall time, machine and every package that computed a number.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alhelpers.al.config import package_versions
from alhelpers.files import atomic_write, read_json
from alhelpers.formation.crossdb import cross_summary


def _md(df: pd.DataFrame, *, digits: int = 4) -> str:
    return df.to_markdown(index=False, floatfmt=f".{digits}g")


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _present(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``df`` restricted to those of ``columns`` it has, in that order."""
    return df[[c for c in columns if c in df]]


def _csv_section(
    path: Path,
    title: str,
    intro: str,
    *,
    columns: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    after: Callable[[pd.DataFrame], str] | None = None,
    rows: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    table: pd.DataFrame | None = None,
) -> list[str]:
    """The ``## title`` section of the result table ``path``, or nothing when the file is missing.

    The intro paragraph, then the table in Markdown (only ``rows(table)`` where given, only
    ``columns`` where given, without ``drop``), then the paragraph ``after(table)`` where given
    (called with the whole table). ``table``: the file's table when the caller has read it already.
    """
    df = table if table is not None else _read_csv(path)
    if df is None:
        return []
    shown = (df if rows is None else rows(df)).drop(columns=[c for c in drop if c in df])
    lines = [f"## {title}", "", intro, "", _md(shown if columns is None else _present(shown, columns)), ""]
    return lines if after is None else [*lines, after(df), ""]


def _verdicts(final: pd.DataFrame) -> str:
    """The verdict paragraphs of the final table (MAE against random)."""
    from alhelpers.stats import verdict_summary

    final.attrs.update({"metric": "mae", "baseline": "random"})
    return verdict_summary(final)


_FINAL_COLUMNS = ("system", "strategy", "n_labelled", "n_pairs", "mae_mean", "mae_std", "r2_mean", "diff_pct",
                  "diff_pct_low", "diff_pct_high", "p_paired", "p_welch", "p_wilcoxon", "p_holm", "effect_size",
                  "finding", "mde_pct", "seeds_needed", "seeds_for_5pct")
_CROSS_COLUMNS = ("system", "direction", "strategy", "n_labelled", "n_pairs", "mae_mean", "mae_std", "diff_pct",
                  "diff_pct_low", "diff_pct_high", "p_paired", "p_holm", "finding")
_CALIBRATION_COLUMNS = ("system", "strategy", "n_labelled", "mae", "mae_pred", "pred_ratio", "z2_mean",
                        "z2_mean_cal", "nll", "nll_cal", "miscal_area", "miscal_area_cal", "ence", "ence_cal",
                        "sigma_scale", "sigma_floor")


def _final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each (system, strategy) at its largest ``n_labelled``."""
    last = df.groupby(["system", "strategy"], sort=False)["n_labelled"].transform("max")
    return df[df["n_labelled"] == last]


def _prediction_summary(cal: pd.DataFrame) -> str:
    """How far the stopping rule's predicted MAE is from the test MAE, per system, over all rounds."""
    err = (cal["pred_ratio"] - 1.0).abs()
    per = cal.assign(err=err).groupby("system", sort=False)["err"].median()
    return ("Predicted vs actual test MAE over every round and strategy (median |mae_pred / mae − 1|): "
            + "; ".join(f"{s} {100 * v:.0f} %" for s, v in per.items()) + ".")


_LEAKAGE_COLUMNS = ("system", "descriptor", "n_samples", "n_features", "r2", "mae", "top_feature", "top_r",
                    "leaks")


def _factors(values: pd.Series) -> str:
    return ", ".join(f"{k} {v:.0f}×" if v >= 10 else f"{k} {v:.1f}×" for k, v in values.items())


def _calibration_words(cal: pd.DataFrame, runs: pd.DataFrame | None) -> list[str]:
    """σ's calibration in the final round, in words: how many times smaller than the error it is
    (test MAE / mean σ, median over strategies and seeds), the mean squared z-score, and after the
    recalibration."""
    fin = _final_rows(cal)
    if fin.empty or "z2_mean" not in fin:
        return []
    z2 = fin.groupby("system", sort=False)[["z2_mean", "z2_mean_cal"]].median()
    if not np.isfinite(z2["z2_mean"].to_numpy(dtype=float)).any():
        return []
    ratio = None
    if runs is not None and {"mean_sigma", "mae"} <= set(runs.columns):
        from alhelpers.al.runs import final_round

        last = final_round(runs)
        ratio = (last["mae"] / last["mean_sigma"]).groupby(last["system"], sort=False).median()
    z2_text = ", ".join(f"{k} {v:.3g}" for k, v in z2["z2_mean"].items())
    if ratio is not None and (ratio > 1.5).all():
        state = ("The ensemble's uncertainty is over-confident in every system: in the final round its test MAE is "
                 f"{_factors(ratio)} its mean σ (median over strategies and seeds), and the mean squared z-score "
                 f"(1 when calibrated) is {z2_text}.")
    elif ratio is not None and (ratio < 1 / 1.5).all():
        state = (f"The ensemble's uncertainty is under-confident: its mean σ is {_factors(1 / ratio)} its test MAE "
                 f"in the final round; mean squared z-score {z2_text}.")
    elif (z2["z2_mean"] > 1.5).all():
        state = f"The ensemble's uncertainty is over-confident: mean squared z-score (1 when calibrated) {z2_text}."
    else:
        state = f"Mean squared z-score of σ in the final round (1 when calibrated): {z2_text}."
    cal_z2 = z2["z2_mean_cal"].to_numpy(dtype=float)
    if np.isfinite(cal_z2).any():
        lo, hi = f"{np.nanmin(cal_z2):.2f}", f"{np.nanmax(cal_z2):.2f}"
        state += (f" Recalibrated by cross-validation on the labelled materials alone (σ'), z² is "
                  f"{lo if lo == hi else f'{lo}–{hi}'}.")
    return [state]


def _exhaustion_words(runs: pd.DataFrame, what: str) -> list[str]:
    """Every run whose pool ran out before the budget, from the runs' ``note`` column."""
    if "note" not in runs:
        return []
    keys = [c for c in ("system", "direction") if c in runs]
    notes = runs[runs["note"].fillna("").str.startswith(("pool exhausted", "pool has"))]
    out = []
    for key, block in notes.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        where = " ".join(str(k) for k in key)
        n = int(block["n_labelled"].max())
        out.append(f"{what} {where}: {block['note'].iloc[0]}. Every strategy ends with the same {n} labelled "
                   "materials, so their final results are identical by construction, not by merit.")
    return out


def _read_cross(out: Path) -> pd.DataFrame | None:
    files = sorted((out / "cross").glob("*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in files], ignore_index=True) if files else None


def _kv(mapping: dict, header: tuple[str, str] = ("setting", "value")) -> str:
    """A two-column Markdown table of a flat mapping (nested values as JSON)."""
    rows = [f"| {k} | {json.dumps(v) if isinstance(v, (list, dict)) else v} |" for k, v in mapping.items()]
    return "\n".join([f"| {header[0]} | {header[1]} |", "|---|---|", *rows])


def _protocol(out: Path, config: dict | None) -> tuple[dict, dict]:
    """(protocol, model) settings of the results: the runner's ``study.json``, else the first run's config."""
    study = dict(config or {})
    path = out / "study.json"
    if path.is_file():
        study = {**read_json(path, todo="Delete it; the study runner writes it again."), **study}
    protocol = dict(study.get("protocol") or {})
    if not protocol:
        for cfg_path in sorted((out / "runs").glob("*.config.json")):
            protocol = dict(read_json(cfg_path, todo="Rerun that seed's notebook 03.").get("config", {}))
            break
    model = dict(protocol.pop("model", {}) or {})
    grid = study.get("grid") or {}
    for k in ("systems", "seeds", "strategies", "descriptors"):
        if k in grid:
            protocol[k] = grid[k]
    if {"n_init", "batch", "rounds"} <= set(protocol):
        from alhelpers.formation.config import ALConfig

        budget = ALConfig(n_init=protocol["n_init"], batch=protocol["batch"], rounds=protocol["rounds"]).budget
        protocol["budget"] = f"{protocol['n_init']} + {protocol['rounds'] - 1} × {protocol['batch']} = {budget} labels"
    if "config_id" in study:
        protocol["config_id"] = study["config_id"]
    return protocol, model


def _runtime(runs: pd.DataFrame | None, wall_s: float | None) -> dict:
    from alhelpers.provenance import machine, now_utc

    info = {"date": now_utc()}
    if wall_s is not None:
        info["wall time"] = f"{wall_s / 60:.1f} min (the study runner, from its start to this report)"
    if runs is not None:
        spent = [c for c in ("fit_s", "feature_s", "query_s") if c in runs]
        if spent:
            info["compute time of the AL runs"] = (f"{runs[spent].to_numpy(dtype=float).sum() / 60:.1f} min "
                                                   "(sum of the recorded training, feature and query times)")
    return {**info, **{f"machine: {k}": v for k, v in machine().items()}}


def conclusion_section(final: pd.DataFrame, *, cross_final: pd.DataFrame | None = None,
                       notes: Sequence[str] = ()) -> list[str]:
    """``## Conclusion``: the three sentences of the final table, then what else the tables say."""
    from alhelpers.stats import conclusion_lines

    lines = ["## Conclusion", "", *(f"- {line}" for line in conclusion_lines(final)), ""]
    extra = list(notes)
    if cross_final is not None and len(cross_final):
        first, second, _ = conclusion_lines(cross_final)
        extra.insert(0, f"Across databases (train on one, test on the other): {first[0].lower()}{first[1:]} {second}")
    if extra:
        lines += ["What else the tables say:", "", *(f"- {n}" for n in extra), ""]
    return lines


def write_report(out_dir: str | Path, *, config: dict | None = None, wall_s: float | None = None) -> Path:
    """Write ``out_dir/report.md`` and ``report.html`` from ``table1.csv``, ``final_table.csv``,
    ``savings.csv``, ``calibration.csv``, ``auc.csv``, ``leakage.csv``, ``cross/`` and ``figures/``
    (whichever exist), with the configuration of ``study.json`` or the runs (``config`` adds to it,
    e.g. the runner's flags; ``wall_s`` the runner's wall time). Returns the Markdown path."""
    out = Path(out_dir)
    final = _read_csv(out / "final_table.csv")
    cal = _read_csv(out / "calibration.csv")
    cross = _read_cross(out)
    from alhelpers.stats import final_table

    cross_final = final_table(cross, baseline="random") if cross is not None else None
    runs = pd.read_parquet(out / "runs.parquet") if (out / "runs.parquet").is_file() else None

    parts = ["# Active learning for formation energy: study report", ""]
    if final is not None:
        notes = [*(_calibration_words(cal, runs) if cal is not None else []),
                 *(_exhaustion_words(runs, "Active learning,") if runs is not None else []),
                 *(_exhaustion_words(cross, "Cross-database,") if cross is not None else [])]
        parts += conclusion_section(final, cross_final=cross_final, notes=notes)
        from alhelpers.select import strategy_table

        parts += ["## The strategies", "", strategy_table(list(dict.fromkeys(final["strategy"]))), ""]
    parts += ["Generated by `alhelpers.report.write_report` from the tidy results in this folder "
              "(`runs.parquet`: one row per system, strategy, seed and round); every sentence above is computed "
              "from the tables below.", ""]

    parts += _csv_section(out / "table1.csv", "Table 1: data per system",
                          "Counts after the filters (finite target, 2–50 atoms, |E_f| ≤ 5 eV/atom, "
                          "de-duplication within 1 meV/atom), formation energy in eV/atom, 80/20 pool/test.")
    parts += _csv_section(out / "final_table.csv", "Final round: each strategy against random",
                          "MAE in eV/atom, mean ± std over seeds; `diff_pct` = (strategy − random) / random in %, "
                          "with its 95 % confidence interval `diff_pct_low` … `diff_pct_high` (paired t over seeds); "
                          "p-values: paired t-test by seed, Welch, Wilcoxon signed-rank; `p_holm`: paired p "
                          "Holm-corrected across strategies; `effect_size`: Cohen's d_z (negative = lower MAE); "
                          "`finding`: the direction and whether it survives the correction. "
                          "With 5 seeds the Wilcoxon test cannot go below p = 0.0625. Power (paired t-test, "
                          "80 %, at the Holm family's strictest level): `mde_pct`, the smallest difference "
                          "(% of random's MAE) these seeds could detect; `seeds_needed`, the seeds the observed "
                          "difference would need; `seeds_for_5pct`, the seeds a 5 % difference would need.",
                          columns=_FINAL_COLUMNS, after=_verdicts, table=final)
    parts += _csv_section(out / "savings.csv", "Label savings",
                          "Targets: random's mean MAE at 50 %, 75 % and 100 % of its labelling budget "
                          "(`budget_frac`). `n_baseline` and `n_reach`: where random's and the strategy's mean "
                          "learning curves first reach the target (interpolated, the same rule for both); "
                          "`saving_pct` = 100·(1 − n_reach/n_baseline), 0 for random by construction; 95 % "
                          "interval from a bootstrap over seeds (Student's t with the bootstrap's standard "
                          "error), and `reach_frac`, the share of replicates that reached the target. The claim "
                          "under test: 5–13 % fewer labels (docs/study.md).", drop=("descriptor",))
    parts += _csv_section(out / "calibration.csv", "Calibration of σ and the predicted MAE",
                          "Final round, mean over seeds. Raw: the ensemble's σ on the test set; `_cal`: σ' = "
                          "√((s·σ)² + τ²) with `sigma_scale` s and `sigma_floor` τ fitted by 3-fold cross-validation "
                          "on the labelled materials only. `z2_mean` is 1 for a calibrated σ (above 1: "
                          "over-confident), `nll` the Gaussian negative log-likelihood, `miscal_area` the area "
                          "between the reliability curve and the diagonal (0 perfect), `ence` the normalised "
                          "calibration error in σ bins. `mae_pred`: the test MAE that σ' of the unlabelled pool "
                          "predicts (the stopping rule's estimate); `pred_ratio` = mae_pred / mae.",
                          columns=_CALIBRATION_COLUMNS, rows=_final_rows, after=_prediction_summary, table=cal)
    parts += _csv_section(out / "auc.csv", "Area under the learning curve",
                          "Mean test MAE over the labelling budget (normalised trapezoid area), bootstrap 95 % CI.")

    figs = out / "figures"
    if figs.exists():
        shown = [(name, caption) for name, caption in FIGURE_CAPTIONS.items() if (figs / name).exists()]
        if shown:
            parts += ["## Figures", ""]
            for name, caption in shown:
                parts += [f"![{caption}](figures/{name})", "", f"*{caption}*", ""]

    floors = sorted((out / "cross").glob("*_disagreement.json"))
    if cross is not None or floors:
        parts += ["## Cross-database validation", ""]
        if floors:
            fl = pd.DataFrame([read_json(p, todo="Run notebook 06 again.") for p in floors])
            fl = _present(fl, ("system", "mp", "oqmd", "n_shared", "mae_shared", "rmse_shared", "mean_diff"))
            parts += ["MP vs OQMD on the reduced compositions both contain (lowest E_f of each; "
                      "`mean_diff` = MP − OQMD, eV/atom) — the floor any transfer can reach:", "", _md(fl), ""]
        if cross is not None:
            parts += ["Train on one database (the pool), test on the other; final-round MAE ± std over seeds:",
                      "", _md(cross_summary(cross)), ""]
            parts += ["The same paired statistics as the final table, per system and direction (paired by "
                      "seed, Holm-corrected across strategies within each system and direction):", "",
                      _md(_present(cross_final, _CROSS_COLUMNS)), ""]

    parts += _csv_section(out / "leakage.csv", "Leakage audit",
                          "Out-of-fold R² of a linear (ridge) model on each descriptor set alone; `leaks` when "
                          "R² ≥ 0.99. On the offline snapshot `paper17` lacks energy per atom and band gap "
                          "(reported missing, not zero-filled), so its leak cannot show here; with live "
                          "Materials Project data it can.", columns=_LEAKAGE_COLUMNS)

    from alhelpers.provenance import code_version, data_hashes

    protocol, model = _protocol(out, config)
    parts += ["## Configuration", ""]
    if protocol:
        parts += ["### Protocol", "", _kv(protocol), ""]
    if model:
        parts += ["### Model", "", "The ensemble of every run (`EnsembleConfig`; `epochs` per round, full batch when "
                  "`batch_size` is empty):", "", _kv(model), ""]
    runner = {k: v for k, v in (config or {}).items() if k not in ("protocol", "grid", "config_id")}
    if runner:
        parts += ["### Runner flags", "", _kv(runner), ""]
    parts += ["### Code, data, date and machine", "", _kv({**{f"code: {k}": v for k, v in code_version().items()},
                                                          **_runtime(runs, wall_s)}), ""]
    hashes = data_hashes(out)
    if hashes:
        parts += ["### Data (sha256, first 16 hex digits)", "", _kv(hashes, ("file", "sha256")), ""]
    parts += ["### Package versions", "", _kv(package_versions(), ("package", "version")), ""]
    text = "\n".join(parts)
    path = out / "report.md"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    write_html(path)
    return path


#: The report's figures (written by notebook 05) and their captions, in the order shown.
FIGURE_CAPTIONS: dict[str, str] = {
    "learning_curves.png": "Learning curves: mean test MAE over seeds per system, error bars ±1 std.",
    "difference_curves.png": "Each strategy's MAE minus random's, paired by seed, in % of random's, with its 95 % "
                             "confidence interval; below 0 is better than random.",
    "final_mae.png": "Final-round MAE per system and strategy (mean ± std).",
    "uncertainty.png": "Uncertainty diagnostics: rank correlation of σ with |error|, and mean σ vs MAE.",
    "reliability.png": "Reliability of σ: observed vs expected fraction of test errors inside σ's intervals, "
                       "as given (dashed) and recalibrated by cross-validation on the labelled set (solid).",
    "cross_database.png": "Cross-database learning curves; dashed: MP vs OQMD disagreement on shared compositions.",
}

_HTML_STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;line-height:1.45;color:#222}table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.2em;
display:block;overflow-x:auto}th,td{border:1px solid #ccc;padding:0.25em 0.5em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
code{background:#f5f5f5;padding:0 0.2em}pre{background:#f5f5f5;padding:0.6em;overflow-x:auto}"""


def _embed(match: re.Match, folder: Path) -> str:
    src = html.unescape(match.group(2))
    path = folder / src
    if src.startswith(("data:", "http://", "https://")) or not path.is_file():
        return match.group(0)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'{match.group(1)}data:image/png;base64,{data}{match.group(3)}'


def write_html(markdown_path: str | Path) -> Path:
    """``report.html`` beside a Markdown report: the same text, its figures embedded as data URIs,
    so the one file can be sent as it is (no folder of images to go with it)."""
    import mistune

    md_path = Path(markdown_path)
    body = mistune.create_markdown(plugins=["table"])(md_path.read_text(encoding="utf-8"))
    body = re.sub(r'(<img src=")([^"]+)(")', lambda m: _embed(m, md_path.parent), body)
    title = html.escape(next((line[2:] for line in md_path.read_text(encoding="utf-8").splitlines()
                              if line.startswith("# ")), "Report"))
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_HTML_STYLE}</style></head><body>\n{body}</body></html>\n")
    path = md_path.with_suffix(".html")
    atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path
