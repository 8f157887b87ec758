"""Install alhelpers in Google Colab and keep the packages Colab already has at their versions.

The notebooks' set-up cell runs this file in the running kernel
(``runpy.run_path(f"{SRC}/scripts/colab_install.py")["install"](SRC)``), before ``alhelpers`` is
importable: so only the standard library here, and ``packaging`` (Colab has it; pip carries its
own copy). Notebook 09 installs the ``mace`` extra with ``install(SRC, extras="mace")``. By hand,
or in tests: ``python scripts/colab_install.py SRC [EXTRAS]``.

1. Every installed distribution is pinned at its installed version (read from ``pip list`` at run
   time, so this follows Colab's image when that changes), and ``python -m pip install -e SRC -c
   <pins>`` runs as a subprocess with its output captured: pip picks the versions of our
   dependencies that fit Colab's packages, and no "you may need to restart the kernel" notice
   appears (IPython's ``%pip`` prints that one; nothing Colab had has changed, so none is needed).
2. Where no version fits, pip fails without installing anything. Then a dry run without the pins
   (bounded only by what Colab's own packages require of each other) names the packages an
   unpinned install would change; each is pinned again if a dry run still succeeds with it pinned,
   and the rest change, within those bounds.
3. A short summary follows: the time, what was added, and every package Colab had that changed,
   with the requirement that made it change. One that this kernel had already imported is named,
   with the one thing to do (restart the session and run all again; that run changes nothing).
   pip's whole output is in ``SRC/colab-install.log``.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import tempfile
import time

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version
except ImportError:  # pragma: no cover - Colab has packaging; pip always carries its own
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.version import InvalidVersion, Version

PROJECT = "alhelpers"
LOG = "colab-install.log"
#: pip's check after installing: "X 1.0 requires y<2, but you have y 2.1 which is incompatible."
_BROKEN = re.compile(r"^(\S+ \S+ requires .*, but you have .*)$", re.M)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, tuple[str, str]]:
    """What pip sees installed: canonical name -> (name, version)."""
    with tempfile.TemporaryDirectory() as tmp:  # not the working directory: see pip_install
        out = subprocess.run([sys.executable, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                             capture_output=True, text=True, check=True, cwd=tmp).stdout
    return {canonical(d["name"]): (d["name"], d["version"]) for d in json.loads(out)}


def pins(dists: dict[str, tuple[str, str]]) -> dict[str, str]:
    """``name==version`` for every installed distribution (canonical name -> constraint); the
    project itself (an earlier run's editable install) and versions pip cannot parse left out."""
    out = {}
    for key, (name, version) in dists.items():
        try:
            Version(version)
        except InvalidVersion:
            continue
        if key != PROJECT:
            out[key] = f"{name}=={version}"
    return out


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def requirements(dists: dict[str, tuple[str, str]]) -> list[tuple[str, Requirement]]:
    """("name version", requirement) for the unconditional requirements of these distributions."""
    out, seen = [], set()
    for dist in md.distributions():
        name = dist.metadata["Name"] or ""
        key = canonical(name)
        if key in seen or key not in dists or key == PROJECT or not _same(dists[key][1], dist.version):
            continue  # another copy, further down sys.path, than the one pip sees
        seen.add(key)
        for line in dist.requires or ():
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                out.append((f"{name} {dist.version}", req))
    return out


def bounds(dists: dict[str, tuple[str, str]], reqs: list[tuple[str, Requirement]]) -> dict[str, str]:
    """What the installed distributions require of each other (canonical name -> constraint), for
    the packages that may have to change: they stay within what Colab's other packages accept.
    Requirements that the installed version already fails (Colab is not always consistent) are
    left out, so that they cannot force a change of their own."""
    specs: dict[str, SpecifierSet] = {}
    for _, req in reqs:
        key = canonical(req.name)
        if key in dists and req.specifier and req.specifier.contains(dists[key][1], prereleases=True):
            specs[key] = specs.get(key, SpecifierSet()) & req.specifier
    return {k: f"{dists[k][0]}{s}" for k, s in specs.items()}


def planned_changes(report: dict, dists: dict[str, tuple[str, str]]) -> set[str]:
    """The installed distributions that a ``pip install --dry-run --report`` would replace."""
    out = set()
    for item in report.get("install", []):
        key = canonical(item["metadata"]["name"])
        if key in dists and key != PROJECT and item["metadata"]["version"] != dists[key][1]:
            out.add(key)
    return out


def changed(before: dict, after: dict) -> dict[str, tuple[str, str | None]]:
    """Distributions that were installed before and now have another version (or are gone)."""
    return {k: (v, after[k][1] if k in after else None) for k, (_, v) in before.items()
            if k != PROJECT and (k not in after or after[k][1] != v)}


def added(before: dict, after: dict) -> list[str]:
    return [f"{n} {v}" for k, (n, v) in sorted(after.items()) if k not in before]


def reasons(name: str, old: str, reqs: list[tuple[str, Requirement]]) -> list[str]:
    """The installed requirements on ``name`` that its old version does not meet."""
    return [f"{who} requires {req.name}{req.specifier}" for who, req in reqs
            if canonical(req.name) == canonical(name) and not req.specifier.contains(old, prereleases=True)]


def loaded_modules(keys) -> dict[str, list[str]]:
    """Which of these distributions this process has already imported: name -> modules."""
    out: dict[str, list[str]] = {}
    for module, dists in md.packages_distributions().items():
        for d in dists:
            if canonical(d) in keys and module in sys.modules:
                out.setdefault(canonical(d), []).append(module)
    return out


def pip_install(target: str, constraints: dict[str, str], log, *, dry_run: bool = False):
    """Run ``pip install -e target -c constraints`` (output captured, appended to ``log``); return
    (success, output, the --report of a dry run or None). pip runs in an empty folder: ``python -m``
    puts the working directory on ``sys.path``, and what lies there is not installed."""
    with tempfile.TemporaryDirectory() as tmp:
        cfile, rfile = os.path.join(tmp, "constraints.txt"), os.path.join(tmp, "report.json")
        with open(cfile, "w") as f:
            f.write("".join(c + "\n" for c in sorted(constraints.values())))
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "-e", target, "-c", cfile]
        if dry_run:
            cmd += ["--dry-run", "--quiet", "--report", rfile]
        env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore"}  # Colab runs as root
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        report = None
        if dry_run and r.returncode == 0 and os.path.exists(rfile):
            with open(rfile) as f:
                report = json.load(f)
    output = r.stdout + r.stderr
    loose = sorted(c for c in constraints.values() if "==" not in c)
    log.write(f"$ pip install{' --dry-run' if dry_run else ''} -e {target}: {len(constraints)} constraints, "
              f"not pinned: {', '.join(loose) or 'none'}\n{output}# exit status {r.returncode}\n\n")
    log.flush()
    return r.returncode == 0, output, report


def plan(target: str, dists: dict, pinned: dict[str, str], log) -> dict[str, str]:
    """Constraints that change as few installed packages as pip can manage (step 2 above)."""
    reqs = requirements(dists)
    bound = bounds(dists, reqs)
    ok, _, report = pip_install(target, bound, log, dry_run=True)
    if not ok:  # no version fits Colab's own requirements either: let pip choose freely
        bound = {}
        ok, _, report = pip_install(target, {}, log, dry_run=True)
        if not ok:
            return pinned  # the final install fails and says why
    must = planned_changes(report, dists)
    constraints = {k: v for k, v in pinned.items() if k not in must}
    constraints.update({k: bound[k] for k in must if k in bound})
    for key in sorted(must & pinned.keys()):  # keep each one after all, where pip still finds a solution
        trial = {**constraints, key: pinned[key]}
        if pip_install(target, trial, log, dry_run=True)[0]:
            constraints = trial
    return constraints


def summary(result: dict) -> str:
    """What :func:`install` prints: the time, what was added, what changed and why."""
    new, changes = result["added"], result["changed"]
    lines = [f"{result.get('what', PROJECT)} installed in {result['seconds']:.0f} s: {len(new)} packages added"
             + (f" ({', '.join(new)})" if new else "") + "."]
    if not changes:
        lines.append("Colab's own packages: all kept at their versions, so no restart is needed.")
        return "\n".join(lines)
    lines.append("Colab's own packages changed where no version of what needs them accepts Colab's:")
    for key, (old, now) in sorted(changes.items()):
        why = "; ".join(result["reasons"].get(key, [])) or "chosen by pip"
        lines.append(f"  {key} {old} -> {now or 'removed'}: {why}")
    lines += [f"  note (pip): {line}" for line in result["broken"]]
    if result["loaded"]:
        lines.append(f"This session had imported {', '.join(sorted(result['loaded']))} before the change: "
                     "choose Runtime > Restart session, then run all again (that run changes nothing).")
    else:
        lines.append("None of them had been imported in this session, so no restart is needed.")
    return "\n".join(lines)


def install(src: str, extras: str = "") -> dict:
    """Install ``src`` (editable; with ``extras``, e.g. ``"mace"``, those too), changing as few
    installed packages as pip can; print a summary and return it as a dict. Raises RuntimeError
    with pip's last lines if pip fails."""
    start = time.monotonic()
    what, target = (f"{PROJECT}[{extras}]", f"{src}[{extras}]") if extras else (PROJECT, src)
    before = installed()
    pinned = pins(before)
    log_path = os.path.join(src, LOG)
    with open(log_path, "a" if extras else "w") as log:
        ok, output, _ = pip_install(target, pinned, log)
        if not ok:
            ok, output, _ = pip_install(target, plan(target, before, pinned, log), log)
    if not ok:
        tail = "\n".join(output.strip().splitlines()[-25:])
        raise RuntimeError(f"pip could not install {what} (all of its output: {log_path}):\n{tail}")
    after = installed()
    changes = changed(before, after)
    reqs = requirements(after)
    result = {"what": what, "seconds": round(time.monotonic() - start, 1), "added": added(before, after),
              "changed": changes,
              "reasons": {k: reasons(k, old, reqs) for k, (old, _) in changes.items()},
              "loaded": loaded_modules(set(changes)) if changes else {}, "broken": _BROKEN.findall(output)}
    print(summary(result))
    return result


if __name__ == "__main__":
    install(sys.argv[1] if len(sys.argv) > 1 else os.getcwd(), *sys.argv[2:3])
