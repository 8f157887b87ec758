"""House rules of the repository: set-up files agree, notebooks are stripped and parameterised."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _names(lines):
    out = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", "-e", "-r")):
            continue
        name = re.split(r"[<>=!\[ ]", line, maxsplit=1)[0].lower()
        out.setdefault(name, set()).add(line)
    return out


def test_requirements_and_environment_list_the_same_dependencies():
    req = _names((REPO / "requirements.txt").read_text().splitlines())
    env_lines = [l.strip()[2:] for l in (REPO / "environment.yml").read_text().splitlines()
                 if l.startswith("      - ")]
    env = _names(env_lines)
    assert set(req) == set(env)
    for name, specs in req.items():
        if name != "torch":  # environment.yml pins the CPU build torch==2.13.0
            assert specs <= env[name], name
    assert env["torch"] == {"torch==2.13.0"}
    for name in ("jupyter", "ipywidgets", "numpy", "torch", "scikit-learn", "mp-api", "pandas",
                 "seaborn", "scipy", "papermill", "pymatgen", "matminer", "pyarrow", "tqdm"):
        assert name in req, f"{name} missing from requirements.txt"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/study.sh" in readme
    assert re.search(r"^bash scripts/test.sh$", ci, re.M)


@pytest.mark.parametrize("nb", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stripped_and_parameterised(nb):
    data = json.loads(nb.read_text())
    code = [c for c in data["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    src = "".join(tagged[0]["source"])
    assert "KEY" not in src.upper().replace("MP_LIMIT", ""), "no secrets as papermill parameters"
    assert "google.colab" in "".join("".join(c["source"]) for c in code)
