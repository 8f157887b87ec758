"""The study report: one Markdown file next to the results, built only from the result tables,
and the same report as one HTML file with its figures embedded, to send as it is.

It opens with its conclusion — sentences computed from the tables, never written by hand: at
which budget the strategies were compared when runs stopped early
(:func:`alhelpers.al.runs.common_budget`), the final table's verdicts with one Holm correction
over every paired test the report states (:func:`alhelpers.stats.conclusion_lines`,
:func:`alhelpers.stats.holm_family`), the label savings against the claimed 5–13 %
(:func:`alhelpers.curves.savings_lines`) — then what else the tables say in words (cross-database
transfer, the calibration of σ per strategy, pool exhaustion), the strategies in plain words, the
tables (a missing value shown as "—", with what it means below each table), the figures and the
full configuration: protocol, model, the code that computed the tables (its code id, recorded in
every table, and the git commit when this checkout is that code), data hashes, date, wall time,
machine and every package that computed a number. Tables computed by different code are refused.
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
from alhelpers.al.runs import common_budget, compared_rows, stop_lines
from alhelpers.calibration import calibration_lines
from alhelpers.files import atomic_write, read_csv, read_json, read_parquet
from alhelpers.formation.crossdb import cross_summary
from alhelpers.layout import STUDY_TABLES

#: How a missing value (NaN, None) is shown in the report's tables.
MISSING = "—"


def _md(df: pd.DataFrame, *, digits: int = 4) -> str:
    """A Markdown table; missing values as :data:`MISSING`, never ``nan``."""
    shown = df.astype(object).where(df.notna(), None)
    return shown.to_markdown(index=False, floatfmt=f".{digits}g", missingval=MISSING)


#: What :data:`MISSING` means in each table of the report (said below the table when it has one).
LEGENDS: dict[str, str] = {
    "final": ("— : not defined there: for random's own rows the differences, tests and power (it is the "
              "baseline); with fewer than 2 paired seeds the tests, intervals and spread (no test is run); with "
              "fewer than 3 the power; where every paired difference is the same (e.g. identical runs) the "
              "t-test's p, Wilcoxon's p and d_z. `inf` seeds: no number of seeds detects a zero difference."),
    "savings": ("— : the strategy's mean curve never reaches the target within the budget (no `n_reach`, no "
                "saving), or no interval (a single seed, or fewer than 2 bootstrap replicates that reach it)."),
    "calibration": ("— : not defined: too few labels to cross-validate the recalibration (the `_cal` columns, "
                    "`sigma_scale`, `sigma_floor`, `mae_pred`), no unlabelled pool left (`mae_pred`), or a σ of "
                    "zero."),
    "auc": "— : a single seed: no interval and no spread (a bootstrap over one seed only repeats it).",
    "stopped": "— : no note recorded.",
    "other": "— : no value.",
}


def _read_csv(path: Path) -> pd.DataFrame | None:
    return read_csv(path) if path.exists() else None


def _present(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``df`` restricted to those of ``columns`` it has, in that order."""
    return df[[c for c in columns if c in df]]


#: Columns every study table carries for provenance; the configuration section states them once.
_PROVENANCE_COLUMNS = ("config_id", "code_id")


def _table_lines(shown: pd.DataFrame, legend: str) -> list[str]:
    """A table in Markdown, and below it what :data:`MISSING` means when the table shows one."""
    shown = shown.drop(columns=[c for c in _PROVENANCE_COLUMNS if c in shown])
    lines = [_md(shown), ""]
    if shown.isna().to_numpy().any():
        lines += [legend, ""]
    return lines


def _csv_section(
    table: pd.DataFrame | None,
    title: str,
    intro: str,
    *,
    columns: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    after: Callable[[pd.DataFrame], str] | None = None,
    rows: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    legend: str = LEGENDS["other"],
) -> list[str]:
    """The ``## title`` section of a result table read from its file, or nothing when the file is
    missing (``table`` None).

    The intro paragraph, then the table in Markdown (only ``rows(table)`` where given, only
    ``columns`` where given, without ``drop`` and the provenance columns), with ``legend`` below
    it when a value is missing, then the paragraph ``after(table)`` where given (called with the
    whole table).
    """
    if table is None:
        return []
    df = table
    shown = (df if rows is None else rows(df)).drop(columns=[c for c in drop if c in df])
    shown = shown if columns is None else _present(shown, columns)
    lines = [f"## {title}", "", intro, "", *_table_lines(shown, legend)]
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


def _prediction_summary(cal: pd.DataFrame) -> str:
    """How far the stopping rule's predicted MAE is from the test MAE, per system, over all rounds."""
    err = (cal["pred_ratio"] - 1.0).abs()
    per = cal.assign(err=err).groupby("system", sort=False)["err"].median()
    return ("Predicted vs actual test MAE over every round and strategy (median |mae_pred / mae − 1|): "
            + "; ".join(f"{s} {100 * v:.0f} %" for s, v in per.items()) + ".")


_LEAKAGE_COLUMNS = ("system", "descriptor", "n_samples", "n_features", "r2", "mae", "top_feature", "top_r",
                    "leaks")


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


def _stopped_table(runs: pd.DataFrame | None, cross: pd.DataFrame | None) -> pd.DataFrame | None:
    """Every run that stopped before the others of its setting, with its note."""
    parts = [common_budget(df).stopped for df in (runs, cross) if df is not None]
    parts = [p for p in parts if len(p)]
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    return table.assign(note=table["note"].replace("", np.nan))


def _read_cross(out: Path) -> tuple[pd.DataFrame | None, dict[str, pd.DataFrame]]:
    """The cross-database runs of ``cross/*.parquet`` concatenated, and each file's table by its
    name in the folder."""
    files = {f"cross/{p.name}": read_parquet(p, todo="Run notebook 06 for that system again.")
             for p in sorted((out / "cross").glob("*.parquet"))}
    return (pd.concat(list(files.values()), ignore_index=True) if files else None), files


def tables_code_id(tables: dict[str, pd.DataFrame | None], folder: str | Path = "") -> str | None:
    """The code id (:func:`alhelpers.provenance.code_id`) every table of a report was computed
    with, from their ``code_id`` columns; ``None`` when none records one (a folder made before code
    ids were recorded).

    Raises ``ValueError`` when the tables (files by name; ``None`` for a file that is not there)
    mix code: two ids, or some with an id and some without — the report would then state numbers of
    different code side by side. The message names which files carry which id and what to do.
    """
    ids: dict[str | None, list[str]] = {}
    for name, df in tables.items():
        if df is None:
            continue
        if "code_id" not in df:
            ids.setdefault(None, []).append(name)
            continue
        values = pd.unique(df["code_id"].astype(object).where(df["code_id"].notna(), None))
        for v in values:
            ids.setdefault(None if v is None else str(v), []).append(name)
    if len(ids) > 1:
        where = f" of {folder}" if str(folder) else ""
        said = "; ".join((f"code id {k}: " if k is not None else "no code id (made before code ids were recorded): ")
                         + ", ".join(v) for k, v in ids.items())
        raise ValueError(
            f"the tables{where} were computed by different code, so a report would mix their numbers: {said}. "
            "Rerun `python -m alhelpers.run study` with the same arguments (it reruns what the code change "
            "affects), or notebooks 03 and 04 (and 06 for cross/), then write the report again.")
    return next(iter(ids)) if ids else None


def _code_rows(table_id: str | None) -> dict[str, str]:
    """The configuration's code rows: the tables' code id, and the git commit only when this
    checkout is that code."""
    from alhelpers.provenance import code_id, code_version

    version = code_version()
    here = code_id()
    rows = {"code: alhelpers": version["alhelpers"]}
    if table_id is None:
        rows["code: id"] = "unknown (the tables record no code id: they were made before code ids were recorded)"
        rows["code: commit"] = (f"unknown (this checkout, code id {here}, commit {version['commit']}, may not be "
                                "the code that computed them)")
    elif table_id == here:
        rows["code: id"] = f"{table_id} (every table's, and this checkout's)"
        rows["code: commit"] = version["commit"]
    else:
        rows["code: id"] = f"{table_id} (every table's)"
        rows["code: commit"] = (f"unknown: the tables were computed by code {table_id}; this checkout is code "
                                f"{here} (commit {version['commit']})")
    return rows


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


def _recalibration(protocol: dict) -> str:
    """How the runs fitted σ' (``ALConfig.calibration``; results made before it was recorded: cross-validation)."""
    from alhelpers.formation.config import CALIBRATIONS

    method = protocol.get("calibration", "cv")
    if method not in CALIBRATIONS:
        raise ValueError(f"the study's configuration names an unknown σ recalibration {method!r} (known: "
                         f"{list(CALIBRATIONS)}); this checkout is older than the code that made the results: "
                         "update it, or rerun the study")
    return CALIBRATIONS[method]


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
                       notes: Sequence[str] = (), savings: pd.DataFrame | None = None,
                       stops: Sequence[str] = ()) -> list[str]:
    """``## Conclusion``: where runs stopped early and the budget compared at (``stops``), the three
    sentences of the final table, the label savings against the claim (``savings``), then what
    else the tables say (the cross-database verdicts first, then ``notes``).

    Every significance the section states comes from **one** Holm family over every paired test
    of the final table and the cross-database table (:func:`alhelpers.stats.holm_family`, scope
    "in this report"); the tables below keep their own ``p_holm``, corrected per setting.
    """
    from alhelpers.curves import savings_lines
    from alhelpers.stats import conclusion_lines, holm_family

    tables = [final] + ([cross_final] if cross_final is not None and len(cross_final) else [])
    family = holm_family(tables, scope="in this report")
    lines = ["## Conclusion", "", *(f"- {s}" for s in stops), *(f"- {line}" for line in conclusion_lines(family[0]))]
    if savings is not None:
        lines += [f"- {line}" for line in savings_lines(savings)]
    lines.append("")
    extra = list(notes)
    if len(family) > 1:
        first, second, _ = conclusion_lines(family[1])
        extra.insert(0, f"Across databases (train on one, test on the other): {first[0].lower()}{first[1:]} {second}")
    if extra:
        lines += ["What else the tables say:", "", *(f"- {n}" for n in extra), ""]
    return lines


def write_report(out_dir: str | Path, *, config: dict | None = None, wall_s: float | None = None) -> Path:
    """Write ``out_dir/report.md`` and ``report.html`` from ``table1.csv``, ``final_table.csv``,
    ``savings.csv``, ``calibration.csv``, ``auc.csv``, ``leakage.csv``, ``runs.parquet``, ``cross/``
    and ``figures/`` (whichever exist), with the configuration of ``study.json`` or the runs
    (``config`` adds to it, e.g. the runner's flags; ``wall_s`` the runner's wall time). Returns
    the Markdown path.

    Raises ``ValueError`` when the tables were computed by different code (their ``code_id``
    columns, :func:`tables_code_id`): a report states the numbers of one code version, named in its
    configuration."""
    out = Path(out_dir)
    tables = {f"{n}.csv": _read_csv(out / f"{n}.csv") for n in STUDY_TABLES}
    runs = (read_parquet(out / "runs.parquet", todo="Run notebook 04 again.") if (out / "runs.parquet").is_file()
            else None)
    cross, cross_files = _read_cross(out)
    table_id = tables_code_id({"runs.parquet": runs, **tables, **cross_files}, out)
    final, cal, savings = tables["final_table.csv"], tables["calibration.csv"], tables["savings.csv"]
    from alhelpers.stats import final_table

    cross_final = final_table(cross, baseline="random") if cross is not None else None
    any_stopped = final is not None and "n_stopped" in final and final["n_stopped"].sum() > 0

    protocol, model = _protocol(out, config)
    fitted = _recalibration(protocol)

    parts = ["# Active learning for formation energy: study report", ""]
    if final is not None:
        notes = [*(calibration_lines(cal, runs, fitted=fitted) if cal is not None else []),
                 *(_exhaustion_words(runs, "Active learning,") if runs is not None else []),
                 *(_exhaustion_words(cross, "Cross-database,") if cross is not None else [])]
        stops = [*(stop_lines(runs) if runs is not None else []),
                 *(stop_lines(cross, "Cross-database, ") if cross is not None else [])]
        if runs is None and any_stopped:
            stops.append(f"{int(final['n_stopped'].sum())} runs stopped before the others of their system; the "
                         "final table compares every strategy at the largest budget all runs reached (`n_labelled`); "
                         "runs.parquet, which says which and why, is not in this folder.")
        parts += conclusion_section(final, cross_final=cross_final, notes=notes, savings=savings, stops=stops)
        from alhelpers.select import strategy_table

        parts += ["## The strategies", "", strategy_table(list(dict.fromkeys(final["strategy"]))), ""]
    parts += ["Generated by `alhelpers.report.write_report` from the tidy results in this folder "
              "(`runs.parquet`: one row per system, strategy, seed and round); every sentence above is computed "
              "from the tables below.", ""]

    parts += _csv_section(tables["table1.csv"], "Table 1: data per system",
                          "Counts after the filters (finite target, 2–50 atoms, |E_f| ≤ 5 eV/atom, "
                          "de-duplication within 1 meV/atom), formation energy in eV/atom, 80/20 pool/test.")
    stopped = _stopped_table(runs, cross)
    final_columns = _FINAL_COLUMNS
    if any_stopped:
        final_columns = (*_FINAL_COLUMNS[:3], "n_stopped", *_FINAL_COLUMNS[3:])
    parts += _csv_section(final, "Final round: each strategy against random",
                          "MAE in eV/atom, mean ± std over seeds, at `n_labelled` labels: the final round, or, "
                          "where runs stopped early (`n_stopped` of the strategy's runs), the largest budget every "
                          "run of the system reached. `diff_pct` = (strategy − random) / random in %, "
                          "with its 95 % confidence interval `diff_pct_low` … `diff_pct_high` (paired t over seeds); "
                          "p-values: paired t-test by seed, Welch, Wilcoxon signed-rank; `p_holm`: paired p "
                          "Holm-corrected across the strategies of each system (a family per system: the "
                          "conclusion above corrects over every paired test in this report instead); "
                          "`effect_size`: Cohen's d_z (negative = lower MAE); "
                          "`finding`: the direction and whether it survives the correction (\"cannot be tested "
                          "with 1 seed\" without a second paired seed; \"no difference (within numerical "
                          "precision)\" when every paired difference is below 10⁻⁵ of random's MAE, i.e. "
                          "float32 rounding). "
                          "With 5 seeds the Wilcoxon test cannot go below p = 0.0625. Power (paired t-test, "
                          "80 %, at the Holm family's strictest level): `mde_pct`, the smallest difference "
                          "(% of random's MAE) these seeds could detect; `seeds_needed`, the seeds the observed "
                          "difference would need; `seeds_for_5pct`, the seeds a 5 % difference would need.",
                          columns=final_columns, after=_verdicts, legend=LEGENDS["final"])
    if stopped is not None:
        parts += ["## Runs that stopped early", "",
                  "Runs that ended before the longest run of their system (and direction), with the note of their "
                  "last round: every table compares the strategies of such a system at the largest budget all of "
                  "its runs reached.", "", *_table_lines(stopped, LEGENDS["stopped"])]
    parts += _csv_section(savings, "Label savings",
                          "Targets: random's mean MAE at 50 %, 75 % and 100 % of its labelling budget "
                          "(`budget_frac`; where runs stopped early, of the budget every run reached). "
                          "`n_baseline` and `n_reach`: where random's and the strategy's mean "
                          "learning curves first reach the target (interpolated, the same rule for both); "
                          "`saving_pct` = 100·(1 − n_reach/n_baseline), 0 for random by construction; 95 % "
                          "interval from a bootstrap over seeds (Student's t with the bootstrap's standard "
                          "error), and `reach_frac`, the share of replicates that reached the target. The claim "
                          "under test: 5–13 % fewer labels (docs/study.md).", drop=("descriptor",),
                          legend=LEGENDS["savings"])
    parts += _csv_section(cal, "Calibration of σ and the predicted MAE",
                          "Final round (where runs stopped early: the budget every run reached), mean over seeds. "
                          "Raw: the ensemble's σ on the test set; `_cal`: σ' = "
                          f"√((s·σ)² + τ²) with `sigma_scale` s and `sigma_floor` τ fitted {fitted}, never on "
                          "the test set. `z2_mean` is 1 for a calibrated σ (above 1: "
                          "over-confident, below 1: intervals too wide), `nll` the Gaussian negative log-likelihood, "
                          "`miscal_area` the area between the reliability curve and the diagonal (0 perfect), `ence` "
                          "the normalised calibration error in σ bins. `mae_pred`: the test MAE that σ' of the "
                          "unlabelled pool predicts (the stopping rule's estimate); `pred_ratio` = mae_pred / mae.",
                          columns=_CALIBRATION_COLUMNS, rows=compared_rows, after=_prediction_summary,
                          legend=LEGENDS["calibration"])
    parts += _csv_section(tables["auc.csv"], "Area under the learning curve",
                          "Mean test MAE over the labelling budget up to `n_labelled` (normalised trapezoid area), "
                          "bootstrap 95 % CI over seeds.", legend=LEGENDS["auc"])

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
            parts += ["Train on one database (the pool), test on the other; final-round MAE ± std over seeds (where "
                      "runs stopped early, at the budget every run of the system and direction reached):", "",
                      *_table_lines(cross_summary(cross), LEGENDS["auc"])]
            parts += ["The same paired statistics as the final table, per system and direction (paired by "
                      "seed; `p_holm` corrected across the strategies within each system and direction, the "
                      "conclusion above over every paired test in this report):", "",
                      *_table_lines(_present(cross_final, _CROSS_COLUMNS), LEGENDS["final"])]

    parts += _csv_section(tables["leakage.csv"], "Leakage audit",
                          "Out-of-fold R² of a linear (ridge) model on each descriptor set alone; `leaks` when "
                          "R² ≥ 0.99. On the offline snapshot `paper17` lacks energy per atom and band gap "
                          "(reported missing, not zero-filled), so its leak cannot show here; with live "
                          "Materials Project data it can.", columns=_LEAKAGE_COLUMNS)

    from alhelpers.provenance import data_hashes

    parts += ["## Configuration", ""]
    if protocol:
        parts += ["### Protocol", "", _kv(protocol), ""]
    if model:
        parts += ["### Model", "", "The ensemble of every run (`EnsembleConfig`; `epochs` per round, full batch when "
                  "`batch_size` is empty):", "", _kv(model), ""]
    runner = {k: v for k, v in (config or {}).items() if k not in ("protocol", "grid", "config_id")}
    if runner:
        parts += ["### Runner flags", "", _kv(runner), ""]
    parts += ["### Code, data, date and machine", "", _kv({**_code_rows(table_id), **_runtime(runs, wall_s)}), ""]
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
