"""House rules of the repository: set-up files agree, notebooks are stripped and parameterised."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

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


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_requirements_and_environment_list_the_same_dependencies():
    project = _pyproject()
    extras = project["optional-dependencies"]
    core, runner = _names(project["dependencies"]), _names(extras["runner"])
    req = _names((REPO / "requirements.txt").read_text().splitlines())
    env_lines = [l.strip()[2:] for l in (REPO / "environment.yml").read_text().splitlines()
                 if l.startswith("      - ")]
    env = _names(env_lines)
    # requirements.txt (the scripted local install) = core + runner extra, with the same specifiers
    assert not set(core) & set(runner)
    assert req == {**core, **runner}
    assert set(req) == set(env)
    for name, specs in req.items():
        if name != "torch":  # environment.yml pins the CPU build torch==2.13.0
            assert specs <= env[name], name
    assert env["torch"] == {"torch==2.13.0"}
    for name in ("ipywidgets", "numpy", "torch", "scikit-learn", "mp-api", "pandas", "seaborn",
                 "scipy", "pymatgen", "matminer", "pyarrow", "tqdm"):
        assert name in core, f"{name} missing from the core dependencies"
    # runner-only dependencies stay out of the core install (Colab has its own server and kernel)
    for name in ("jupyter", "ipykernel", "papermill", "nbformat", "dask"):
        assert name in runner and name not in core, name
    # the test extra (scripts/setup.sh installs .[test]) pulls the runner extra
    assert "alhelpers[runner]" in extras["test"]
    assert "-e .[test]" in env_lines


#: The oldest versions Google Colab shipped since its move to Python 3.12 (googlecolab/backend-info
#: pip-freeze.txt, 2025-08 .. 2026-08). Core lower bounds must admit them, or installing the
#: notebooks in Colab would replace Colab's own packages.
COLAB = {
    "numpy": "2.0.2", "pandas": "2.2.2", "scipy": "1.16.1", "scikit-learn": "1.6.1",
    "torch": "2.8.0", "pyarrow": "18.1.0", "matplotlib": "3.10.0", "seaborn": "0.13.2",
    "statsmodels": "0.14.5", "tabulate": "0.9.0", "tqdm": "4.67.1", "psutil": "5.9.5",
    "requests": "2.32.3", "ipywidgets": "7.7.1",
}


def test_core_dependencies_keep_colabs_preinstalled_versions():
    reqs = {Requirement(r).name.lower(): Requirement(r) for r in _pyproject()["dependencies"]}
    for name, version in COLAB.items():
        if name in reqs:
            assert reqs[name].specifier.contains(version), f"{reqs[name]} would replace Colab's {version}"
    assert {"numpy", "pandas", "torch", "matplotlib", "ipywidgets"} <= set(reqs)


def test_python_floor_matches_the_code():
    """requires-python admits Colab's Python and no version the code cannot run on."""
    floor = SpecifierSet(_pyproject()["requires-python"])
    assert "3.12" in floor and "3.13" in floor  # Colab
    if "StrEnum" in (REPO / "alhelpers" / "keys.py").read_text():  # enum.StrEnum: Python 3.11
        assert "3.10" not in floor
    assert "3.11" in floor  # requirements-lock.txt and environment.yml are for 3.11


# --- scripts/setup.sh: which torch it installs ----------------------------------------------------

SETUP = REPO / "scripts" / "setup.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _install_torch(tmp_path, *, os_name="Linux", arch="x86_64", nvidia=None, reachable=True,
                   cpu_index_fails=False, dry_run=True, env=None):
    """Run ``install_torch`` of scripts/setup.sh with a fake uname, nvidia-smi and python.

    ``nvidia``: None (no nvidia-smi), "gpu" (lists a GPU) or "broken" (no driver, exits 9). The
    fake python logs every call and answers the index check with ``reachable``; it fails a pip
    install from an index when ``cpu_index_fails``. Returns (stdout, the pip commands run or,
    with ``dry_run``, printed).
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"

    def script(name, body):
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        return path

    script("uname", f'case "$1" in -m) echo {arch} ;; *) echo {os_name} ;; esac\n')
    if nvidia == "gpu":
        script("nvidia-smi", 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"\n')
    elif nvidia == "broken":
        script("nvidia-smi", 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the '
                             'NVIDIA driver."; exit 9\n')
    for tool in ("timeout", "grep"):  # the only other programs install_torch runs
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    python = script("python", f"""case "$*" in
  *urllib*) eval "url=\\${{$#}}"; echo "probe $url" >> {log}; exit {0 if reachable else 1} ;;
esac
echo "$*" >> {log}
case "$*" in *--index-url*) exit {1 if cpu_index_fails else 0} ;; esac
""")
    run_env = {"PATH": str(bin_dir), "ALHELPERS_SETUP_LIB": "1", **(env or {})}
    if dry_run:
        run_env["ALHELPERS_SETUP_DRY_RUN"] = "1"
    out = subprocess.run([shutil.which("bash"), "-c", 'source "$0" && install_torch "$1"', SETUP, python],
                         env=run_env, capture_output=True, text=True, timeout=60, check=True).stdout
    calls = log.read_text().splitlines() if log.exists() else []
    probes = [l.split(" ", 1)[1] for l in calls if l.startswith("probe ")]
    if dry_run:  # nothing but the index check ran; the pip commands were printed
        assert len(calls) == len(probes)
        pips = [l.split(": ", 1)[1].split(" ", 1)[1] for l in out.splitlines() if "dry run:" in l]
    else:
        pips = [l for l in calls if not l.startswith("probe ")]
    return out, pips, probes


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("nvidia", [None, "broken"])
def test_setup_installs_cpu_torch_on_linux_without_gpu(tmp_path, arch, nvidia):
    out, pips, probes = _install_torch(tmp_path, arch=arch, nvidia=nvidia)
    assert pips == [f"-m pip install -q --index-url {CPU_INDEX} --timeout 15 --retries 2 torch==2.13.0"]
    assert probes == [CPU_INDEX]
    assert "CPU build" in out


def test_setup_installs_plain_torch_when_an_nvidia_gpu_is_present(tmp_path):
    out, pips, probes = _install_torch(tmp_path, nvidia="gpu")
    assert pips == ["-m pip install -q torch==2.13.0"] and not probes
    assert "NVIDIA GPU found" in out


def test_setup_falls_back_to_plain_install_when_cpu_index_is_unreachable(tmp_path):
    out, pips, probes = _install_torch(tmp_path, reachable=False)
    assert pips == ["-m pip install -q torch==2.13.0"] and probes == [CPU_INDEX]
    assert f"{CPU_INDEX} cannot be reached" in out


def test_setup_falls_back_to_plain_install_when_install_from_cpu_index_fails(tmp_path):
    out, pips, _ = _install_torch(tmp_path, cpu_index_fails=True, dry_run=False)
    assert pips == [f"-m pip install -q --index-url {CPU_INDEX} --timeout 15 --retries 2 torch==2.13.0",
                    "-m pip install -q torch==2.13.0"]
    assert "failed: installing torch==2.13.0 with plain pip instead" in out


def test_setup_installs_plain_torch_on_macos(tmp_path):
    out, pips, probes = _install_torch(tmp_path, os_name="Darwin", arch="arm64")
    assert pips == ["-m pip install -q torch==2.13.0"] and not probes
    assert "macOS" in out


@pytest.mark.parametrize("choice, expected", [
    ("pypi", "-m pip install -q torch==2.13.0"),
    ("https://download.pytorch.org/whl/cu126",
     "-m pip install -q --index-url https://download.pytorch.org/whl/cu126 torch==2.13.0"),
])
def test_setup_torch_index_can_be_overridden(tmp_path, choice, expected):
    out, pips, probes = _install_torch(tmp_path, env={"ALHELPERS_TORCH_INDEX": choice})
    assert pips == [expected] and not probes
    assert "ALHELPERS_TORCH_INDEX" in out


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


def _notebook_parameters(name: str) -> set[str]:
    """Names assigned in a notebook's ``parameters`` cell."""
    import ast

    from alhelpers.data.paths import REPO_ROOT

    nb = json.loads((REPO_ROOT / "notebooks" / name).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


@pytest.mark.parametrize("nb", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_papermill_reads_every_parameter_of_the_parameters_cell(nb):
    # papermill's own reader of a parameters cell gives up on a line with a second "=" (one in its
    # comment, say), prints "Unable to parse line …" and then "Passed unknown parameter" for a
    # parameter the runner passes: noise in every run's output, and `papermill --help-notebook`
    # would not list it
    import papermill as pm

    assert set(pm.inspect_notebook(str(nb))) == _notebook_parameters(nb.name)


@pytest.mark.parametrize("argv", [["study", "--target-mae", "0.1"], ["potentials", "--system", "tio2", "--model", "mace"]])
def test_every_runner_parameter_is_a_parameter_of_its_notebook(tmp_path, argv):
    # papermill only warns ("Passed unknown parameter") and the notebook silently ignores the value
    from alhelpers.layout import Layout
    from alhelpers.run import build_parser
    from alhelpers.runner import potentials, study

    args = build_parser().parse_args([*argv, "--out", str(tmp_path)])
    layout = Layout.at(str(tmp_path))
    if argv[0] == "study":
        fetch, feat = study.featurize_tasks(layout, args)
        tasks = [*fetch, *feat, *study.al_tasks(layout, args), *study.cross_tasks(layout, args),
                 *study.report_tasks(layout, args)]
    else:
        tasks = [*potentials.potential_tasks(layout, args), potentials.statistics_task(layout, args)]
    for task in tasks:
        unknown = set(task.parameters) - _notebook_parameters(task.notebook)
        assert not unknown, f"{task.notebook}: {sorted(unknown)}"


def test_runner_gives_a_busy_machine_time_to_start_a_kernel(tmp_path, monkeypatch):
    # papermill waits 60 s for a kernel by default; on a 2-core machine running two notebooks and
    # a study beside them a kernel took longer ("Kernel didn't respond in 60 seconds")
    import papermill as pm

    from alhelpers.layout import Layout
    from alhelpers.runner.tasks import KERNEL_START_S, Task, execute

    seen = {}

    def fake(*args, **kw):
        seen.update(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(pm, "execute_notebook", fake)
    task = Task("05_figures.ipynb", tmp_path / "05.ipynb", {"OUT_DIR": str(Layout.at(str(tmp_path)).root)})
    with pytest.raises(RuntimeError, match="stop here"):
        execute(task)
    assert seen["start_timeout"] == KERNEL_START_S >= 300


def test_notebook_07_defaults_are_the_documented_ones():
    """Notebook 07 teaches with NOTEBOOK_STRATEGIES (notebook 08 runs them when it finds no runs);
    "study" is the study's seven, one parameter away."""
    import ast

    from alhelpers.atomistic.config import DEFAULT_STRATEGIES, NOTEBOOK_STRATEGIES, resolve_strategies
    from alhelpers.data.paths import REPO_ROOT

    nb = json.loads((REPO_ROOT / "notebooks" / "07_bmdal_potentials.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    values = {t.id: ast.literal_eval(node.value) for node in ast.parse("".join(cell["source"])).body
              if isinstance(node, ast.Assign) for t in node.targets}
    assert tuple(values["STRATEGIES"]) == NOTEBOOK_STRATEGIES
    assert (values["N_INIT"], values["BATCH"], values["MAX_SIZE"], values["WARM_START"]) == (10, 10, 100, True)
    assert resolve_strategies("study") == DEFAULT_STRATEGIES == resolve_strategies(" Study")
    assert resolve_strategies(["random"]) == ["random"]
