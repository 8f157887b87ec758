"""The Colab set-up cell's install (scripts/colab_install.py) keeps the packages Colab already has.

Default suite: the set-up cell runs the script and never ``%pip`` (whose "you may need to restart
the kernel" contradicted the cell's "no restart"); the constraints the script writes from an
installed list; and a real pip, offline, on stand-in packages built here as wheels, where the
newest version of a new dependency needs a newer "scipy" (an older one does not) and no version
of another accepts Colab's "pyarrow" (as with matminer and mp-api).

``network`` + ``slow``: a fresh virtual environment holding Colab's versions of the packages that
matter (tests/data/colab_versions.txt), the script run on a copy of this working tree, PyPI.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from alhelpers import colab

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "colab_install.py"
COLAB_VERSIONS = REPO / "tests" / "data" / "colab_versions.txt"
RESTART_NOTICE = "restart the kernel"  # IPython's %pip: "you may need to restart the kernel ..."


def _load():
    spec = importlib.util.spec_from_file_location("colab_install", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- the cell


def test_setup_cell_installs_through_the_script_never_through_pip_magic():
    cell = colab.SETUP_CELL
    assert "%pip" not in cell and "!pip" not in cell and "pip install" not in cell
    assert 'runpy.run_path(f"{SRC}/scripts/colab_install.py")["install"](SRC)' in cell
    assert "sys.path.insert(0, SRC)" in cell  # the running kernel imports the clone: no restart
    assert SCRIPT.is_file()
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        code = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        assert "%pip" not in code and "!pip" not in code, nb.name
    mace = json.loads((REPO / "notebooks" / "09_bring_your_own_potential.ipynb").read_text())
    assert any('["install"](SRC, extras="mace")' in "".join(c["source"]) for c in mace["cells"])


def test_installer_needs_only_the_standard_library():
    """It runs before alhelpers (or anything it depends on) is installed."""
    tree = ast.parse(SCRIPT.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    assert roots - sys.stdlib_module_names <= {"packaging", "pip"}, roots  # pip: its own packaging


# --------------------------------------------------------------------------- its parts


def test_pins_every_installed_distribution_but_the_project():
    ci = _load()
    dists = {ci.canonical(n): (n, v) for n, v in [
        ("numpy", "2.1.3"), ("torch", "2.11.0+cu128"), ("typing_extensions", "4.16.0"),
        ("alhelpers", "0.1.0"), ("dbus-python", "1.2.18-ubuntu"), ("PyYAML", "6.0.3")]}
    assert ci.pins(dists) == {"numpy": "numpy==2.1.3", "torch": "torch==2.11.0+cu128",
                              "typing-extensions": "typing_extensions==4.16.0", "pyyaml": "PyYAML==6.0.3"}


def test_bounds_are_what_the_installed_packages_ask_of_each_other():
    ci = _load()
    dists = {"pyarrow": ("pyarrow", "18.1.0"), "requests": ("requests", "2.32.4"), "ibis": ("ibis", "9.5.0")}
    req = ci.Requirement
    reqs = [("cudf-cu12 26.2.1", req("pyarrow>=15.0.0")), ("bigframes 2.42.0", req("pyarrow>=15.0.2")),
            ("google-cloud-bigquery 3.43.0", req("requests<3.0.0,>=2.21.0")),
            ("ibis-framework 9.5.0", req("pyarrow<18")),  # already broken in Colab: it cannot decide
            ("x 1", req("numpy"))]  # not installed: no bound
    b = ci.bounds(dists, reqs)
    assert set(b) == {"pyarrow", "requests"}
    assert ci.SpecifierSet(b["pyarrow"][len("pyarrow"):]) == ci.SpecifierSet(">=15.0.0,>=15.0.2")
    assert ci.SpecifierSet(b["requests"][len("requests"):]) == ci.SpecifierSet("<3.0.0,>=2.21.0")
    assert ci.reasons("pyarrow", "18.1.0", [*reqs, ("mp-api 0.46.5", req("pyarrow>=20.0.0"))]) == [
        "ibis-framework 9.5.0 requires pyarrow<18", "mp-api 0.46.5 requires pyarrow>=20.0.0"]


def test_planned_changes_and_summary():
    ci = _load()
    dists = {"scipy": ("scipy", "1.16.3"), "pyarrow": ("pyarrow", "18.1.0"), "alhelpers": ("alhelpers", "0.1.0")}
    report = {"install": [{"metadata": {"name": n, "version": v}} for n, v in [
        ("alhelpers", "0.1.0"), ("matminer", "0.10.1"), ("scipy", "1.16.3"), ("pyarrow", "26.0.1")]]}
    assert ci.planned_changes(report, dists) == {"pyarrow"}
    kept = {"seconds": 61.2, "added": ["alhelpers 0.1.0", "matminer 0.9.3"], "changed": {}, "reasons": {},
            "loaded": {}, "broken": []}
    text = ci.summary(kept)
    assert text.startswith("alhelpers installed in 61 s: 2 packages added (alhelpers 0.1.0, matminer 0.9.3).")
    assert "all kept at their versions, so no restart is needed" in text and RESTART_NOTICE not in text
    moved = {**kept, "changed": {"pyarrow": ("18.1.0", "26.0.1")},
             "reasons": {"pyarrow": ["mp-api 0.46.5 requires pyarrow>=20.0.0"]}}
    text = ci.summary(moved)
    assert "  pyarrow 18.1.0 -> 26.0.1: mp-api 0.46.5 requires pyarrow>=20.0.0" in text
    assert "so no restart is needed" in text and RESTART_NOTICE not in text
    text = ci.summary({**moved, "loaded": {"pyarrow": ["pyarrow"]}})
    assert "had imported pyarrow before the change" in text and "Restart session" in text


# --------------------------------------------------------------------------- a real pip, offline

_WHEEL = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _wheel(dest: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A pure-Python wheel with one empty module and these requirements."""
    mod, dist = name.replace("-", "_"), f"{name.replace('-', '_')}-{version}"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{mod}/__init__.py": "", f"{dist}.dist-info/METADATA": meta, f"{dist}.dist-info/WHEEL": _WHEEL}
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{p},,\n" for p in [*files, f"{dist}.dist-info/RECORD"])
    with zipfile.ZipFile(dest / f"{dist}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


#: A PEP 517 backend in the stand-in project itself, so that pip builds it offline with no setuptools.
_BACKEND = '''
import os, zipfile
NAME, VERSION, REQUIRES = "alhelpers", "0.1.0", {requires!r}
def _build(directory, editable):
    dist = NAME + "-" + VERSION
    meta = "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION)
    meta += "".join("Requires-Dist: %s\\n" % r for r in REQUIRES)
    files = {{dist + ".dist-info/METADATA": meta, dist + ".dist-info/WHEEL": {wheel!r},
             NAME + ".pth": os.path.dirname(os.path.abspath(__file__)) + "\\n"}}
    files[dist + ".dist-info/RECORD"] = "".join(p + ",,\\n" for p in [*files, dist + ".dist-info/RECORD"])
    name = dist + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return name
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, False)
def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, True)
'''


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def _versions(py: Path, env: dict) -> dict[str, str]:
    out = subprocess.run([py, "-m", "pip", "list", "--format=json"], env=env, capture_output=True, text=True,
                         check=True).stdout
    return {d["name"]: d["version"] for d in json.loads(out)}


def test_a_real_pip_keeps_what_fits_and_changes_only_what_must(tmp_path):
    """Colab has fake-scipy 1.16.3, fake-pyarrow 18.1.0 and fake-cudf (which accepts fake-pyarrow
    <25). The project needs fake-matminer (0.10.1 needs fake-scipy>=1.17; 0.9.3 does not) and
    fake-mpapi (needs fake-pyarrow>=20). The old cell's plain install upgrades both, to the newest;
    the script keeps fake-scipy, moves fake-pyarrow only as far as fake-cudf accepts, and says why."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name, version, requires in [
        ("fake-scipy", "1.16.3", ()), ("fake-scipy", "1.18.1", ()),
        ("fake-pyarrow", "18.1.0", ()), ("fake-pyarrow", "21.0.0", ()), ("fake-pyarrow", "26.0.1", ()),
        ("fake-cudf", "26.2.1", ("fake-pyarrow<25,>=15",)),
        ("fake-matminer", "0.9.3", ("fake-scipy>=1.11",)), ("fake-matminer", "0.10.1", ("fake-scipy>=1.17.0",)),
        ("fake-mpapi", "0.46.5", ("fake-pyarrow>=20.0.0",)),
    ]:
        _wheel(wheels, name, version, requires)
    src = tmp_path / "src"
    (src / "scripts").mkdir(parents=True)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n')
    (src / "backend.py").write_text(_BACKEND.format(requires=["fake-matminer", "fake-mpapi"], wheel=_WHEEL))
    (src / "scripts" / "colab_install.py").write_text(SCRIPT.read_text())
    (src / "alhelpers").mkdir()
    (src / "alhelpers" / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    py = _venv(tmp_path / "venv")
    subprocess.run([py, "-m", "pip", "install", "-q", "fake-scipy==1.16.3", "fake-pyarrow==18.1.0",
                    "fake-cudf==26.2.1"], env=env, check=True)
    before = _versions(py, env)

    old = subprocess.run([py, "-m", "pip", "install", "--dry-run", "-q", "--report", "-", "-e", str(src)],
                         env=env, capture_output=True, text=True, check=True)  # what `%pip install -e` did
    planned = {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(old.stdout)["install"]}
    assert planned["fake-scipy"] == "1.18.1" and planned["fake-pyarrow"] == "26.0.1"

    r = subprocess.run([py, str(src / "scripts" / "colab_install.py"), str(src)], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    after = _versions(py, env)
    assert {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v} == {
        "fake-pyarrow": ("18.1.0", "21.0.0")}
    assert after["fake-matminer"] == "0.9.3" and after["fake-mpapi"] == "0.46.5"
    assert "added (alhelpers 0.1.0, fake-matminer 0.9.3, fake-mpapi 0.46.5)" in r.stdout
    assert "  fake-pyarrow 18.1.0 -> 21.0.0: fake-mpapi 0.46.5 requires fake-pyarrow>=20.0.0" in r.stdout
    assert "so no restart is needed" in r.stdout and RESTART_NOTICE not in r.stdout + r.stderr
    assert (src / "colab-install.log").read_text().count("$ pip install") >= 3  # pinned, planned, final

    again = subprocess.run([py, str(src / "scripts" / "colab_install.py"), str(src)], env=env,
                           capture_output=True, text=True)  # running the cell again changes nothing
    assert again.returncode == 0 and "0 packages added." in again.stdout and "all kept" in again.stdout
    assert (src / "colab-install.log").read_text().count("$ pip install") == 1
    assert subprocess.run([py, "-c", "import alhelpers, fake_mpapi"], env=env, cwd=tmp_path).returncode == 0


# --------------------------------------------------------------------------- Colab's versions, PyPI


def _colab_versions() -> dict[str, str]:
    out = {}
    for line in COLAB_VERSIONS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def _copy_working_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes((REPO / rel).read_bytes())


@pytest.mark.slow
@pytest.mark.network
def test_install_keeps_colabs_own_versions(tmp_path):
    """Colab's versions of the packages that matter, from PyPI, in a fresh venv (torch: a stand-in
    with Colab's version and its non-CUDA requirements, not the 3 GB wheel); then the set-up
    cell's install of this working tree. Nothing Colab has changes but pyarrow and requests, which
    no version of what needs them allows to stay (mp-api >= 0.46.1: pyarrow >= 20; every
    pymatgen-core, which emmet-core 0.87 imports: requests >= 2.32.5), each named with its reason."""
    py = _venv(tmp_path / "venv")
    subprocess.run([py, "-m", "pip", "install", "-q", "-r", COLAB_VERSIONS], check=True)
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    info = site / "torch-2.11.0+cu128.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.11.0+cu128\n" + "".join(
        f"Requires-Dist: {r}\n" for r in ["filelock", "typing-extensions>=4.10.0", "setuptools<82",
                                          "sympy>=1.13.3", "networkx>=2.5.1", "jinja2", "fsspec>=0.8.5"]))
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    before = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in _versions(py, env).items()}
    colab_has = _colab_versions()
    assert all(before[k] == v for k, v in colab_has.items()), "the venv does not hold Colab's versions"

    src = tmp_path / "alhelpers-src"
    _copy_working_tree(src)
    r = subprocess.run([py, str(src / "scripts" / "colab_install.py"), str(src)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    print(r.stdout)
    after = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in _versions(py, env).items()}
    moved = {k for k in before if after.get(k) != before[k]}
    assert moved <= {"pyarrow", "requests"}, {k: (before[k], after.get(k)) for k in moved}
    assert after["torch"] == "2.11.0+cu128"
    for key in moved:
        assert re.search(rf"^  {key} {re.escape(before[key])} -> {re.escape(after[key])}: \S+ \S+ requires {key}",
                         r.stdout, re.M), r.stdout
    assert RESTART_NOTICE not in r.stdout + r.stderr and "no restart is needed" in r.stdout

    check = ("import alhelpers, mp_api.client, pyarrow.parquet\n"
             "from alhelpers.formation.features import magpie_features\n"
             "print(magpie_features(['TiO2', 'NaCl']).shape)\n")
    out = subprocess.run([py, "-W", "ignore", "-c", check], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "(2, 132)", out.stderr[-3000:]
