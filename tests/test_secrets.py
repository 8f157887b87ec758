"""No Materials Project API key ends up in an executed notebook or in anything a run writes.

The key reaches the notebook kernels only through the environment (papermill kernels inherit
``os.environ``); it is never a papermill parameter, a config field or a printed value.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from pathlib import Path

import pytest

from alhelpers.formation import config as config_module
from alhelpers.run import build_parser
from alhelpers.runner.study import featurize_tasks
from alhelpers.runner.tasks import Task, TaskError, execute_task

NB = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture
def fake_key(monkeypatch) -> str:
    key = secrets.token_hex(16)  # 32 characters, like a real key
    monkeypatch.setenv("MP_API_KEY", key)
    return key


def assert_nowhere(key: str, root: Path) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file()]
    for p in files:
        data = p.read_bytes()
        assert key.encode() not in data, f"API key leaked into {p}"
        assert key[:16].encode() not in data, f"part of the API key leaked into {p}"
    return files


def test_executed_fetch_notebooks_hold_no_api_key(tmp_path, fake_key, monkeypatch):
    nbdir = tmp_path / "notebooks"
    # the offline source: a complete run of notebook 01 with the key in the kernel's environment
    ok = Task("01_fetch.ipynb", nbdir / "01_fetch_snapshot.ipynb",
              {"SYSTEM": "Ti-O", "SOURCE": "snapshot", "OUT_DIR": str(tmp_path)})
    rec, _ = execute_task(ok)
    assert rec["n_rows"] == 148 and (tmp_path / rec["out_path"]).with_suffix(".config.json").exists()

    # the live source, where a key is used: the query fails at once (proxy on a closed port), and
    # the error shown in the executed notebook must not quote the key either
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    live = Task("01_fetch.ipynb", nbdir / "01_fetch_mp.ipynb",
                {"SYSTEM": "Ti-O", "SOURCE": "mp", "OUT_DIR": str(tmp_path)})
    with pytest.raises(TaskError) as err:
        execute_task(live)
    assert "MPQueryError" in str(err.value)  # the kernel found the key and tried to use it
    assert fake_key not in str(err.value)
    (failed_nb,) = nbdir.glob("01_fetch_mp.*.running.ipynb")
    assert "MPQueryError" in failed_nb.read_text()

    written = assert_nowhere(fake_key, tmp_path)
    assert {ok.output, failed_nb} <= set(written) and any(p.suffix == ".json" for p in written)
    for nb in (ok.output, failed_nb):
        params = json.loads(nb.read_text())["metadata"]["papermill"]["parameters"]
        assert not any("key" in name.lower() for name in params), params


def test_no_parameters_cell_or_config_takes_a_key():
    for path in sorted(NB.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(cells) == 1, path.name
        source = "".join(cells[0]["source"]).lower()
        assert "mp_api_key" not in source and "api_key" not in source, path.name
    field_names = {f.name for f in dataclasses.fields(config_module.FetchConfig)}
    assert "system" in field_names and not any("key" in n for n in field_names)
    for obj in vars(config_module).values():
        if dataclasses.is_dataclass(obj) and isinstance(obj, type):
            assert not any("key" in f.name.lower() or "token" in f.name.lower()
                           for f in dataclasses.fields(obj)), obj


def test_study_tasks_pass_no_key(tmp_path, fake_key):
    from alhelpers.runner.study import al_tasks, cross_tasks, report_tasks

    from alhelpers.layout import Layout

    args = build_parser().parse_args(["study", "--source", "mp", "--out", str(tmp_path)])
    layout = Layout(tmp_path)
    fetch, feat = featurize_tasks(layout, args)
    tasks = [*fetch, *feat, *al_tasks(layout, args), *cross_tasks(layout, args),
             *report_tasks(layout, args)]
    for t in tasks:
        assert not any("key" in name.lower() for name in t.parameters), t.label
        assert fake_key not in json.dumps(t.parameters, default=str), t.label
