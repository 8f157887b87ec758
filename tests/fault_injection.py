"""Fault injection: a small study, interrupted and damaged at random, must give the same final tables
bit for bit after a rerun, or stop with one clear message that names the damaged file; never a
different number.

Each seeded trial does one of:

* ``kill-runner`` — SIGKILL the runner (and its kernels) at a random moment of a run from scratch;
* ``kill-kernel`` — SIGKILL one notebook kernel at a random moment (the runner reports the task as
  failed and goes on);
* ``truncate`` / ``corrupt`` / ``garbage`` — cut a random file of a finished results folder short,
  overwrite bytes in its middle, or replace it with random bytes;

then runs the same command again (twice at most: a killed kernel fails its task, and the second run
finishes it) and compares the study tables with those of an uninterrupted run.

    python tests/fault_injection.py --trials 50 --seed 0 [--work DIR]

prints one line per trial and the counts per kind and outcome, and exits 1 when any trial ended
in a different number or an unclear failure. ``tests/test_fault_injection.py`` runs a few trials in
the default test run and 50 in the slow one.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The small study every trial runs (two seeds side by side, every stage, cross-database included).
STUDY = ("study", "--systems", "Ti-O", "--seeds", "0", "1", "--smoke", "--n-boot", "20", "--jobs", "2")
#: A smaller one for the default test run (one seed, no cross-database stage).
SMALL_STUDY = ("study", "--systems", "Ti-O", "--seeds", "0", "--smoke", "--n-boot", "20", "--no-cross-db",
               "--jobs", "1")

#: The tables compared byte for byte (the runs table without its timing columns, see :func:`tables`).
TABLES = ("final_table.csv", "savings.csv", "auc.csv", "calibration.csv", "table1.csv", "leakage.csv")

KINDS = ("kill-runner", "kill-kernel", "truncate", "corrupt", "garbage")

#: Outcomes that pass: the same tables, or a refusal (exit 2) or failed task (exit 1) naming the file.
GOOD = ("same tables", "named the file")


@dataclass
class Trial:
    index: int
    kind: str
    what: str
    outcome: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"trial {self.index:3d} {self.kind:<11} {self.what}: {self.outcome}"
        return text + (f" ({self.detail})" if self.detail else "")


def command(out: Path, study: tuple[str, ...] = STUDY) -> list[str]:
    return [sys.executable, "-m", "alhelpers.run", *study, "--out", str(out)]


def run_study(out: Path, study: tuple[str, ...] = STUDY, *, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command(out, study), capture_output=True, text=True, timeout=timeout)


def tables(out: Path) -> dict[str, bytes]:
    """The study's final tables as bytes, and the runs' numbers (timing columns left out)."""
    import pandas as pd

    from alhelpers.keys import TIMING_COLUMNS

    found = {name: (out / name).read_bytes() for name in TABLES if (out / name).exists()}
    if (out / "runs.parquet").exists():
        runs = pd.read_parquet(out / "runs.parquet")
        found["runs.parquet"] = runs.drop(columns=[c for c in TIMING_COLUMNS if c in runs]).to_csv().encode()
    return found


def _files(out: Path) -> list[Path]:
    """Every file of a results folder a fault may hit (the lock and replaced results left out)."""
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != ".runner.lock"
                  and "replaced" not in p.relative_to(out).parts)


def damage(path: Path, kind: str, rng: np.random.Generator) -> str:
    """Truncate, corrupt or replace ``path``; say how."""
    data = path.read_bytes()
    if kind == "truncate":
        keep = int(rng.integers(0, max(1, len(data))))
        path.write_bytes(data[:keep])
        return f"cut to {keep} of {len(data)} bytes"
    if kind == "corrupt":
        buf = bytearray(data)
        n = max(1, min(64, len(buf) // 10))
        start = int(rng.integers(0, max(1, len(buf) - n)))
        buf[start:start + n] = rng.integers(0, 256, size=len(buf[start:start + n]), dtype=np.uint8).tobytes()
        path.write_bytes(bytes(buf))
        return f"{n} bytes overwritten at {start}"
    size = int(rng.integers(0, 4096))
    path.write_bytes(rng.integers(0, 256, size=size, dtype=np.uint8).tobytes())
    return f"replaced by {size} random bytes"


def _kernels(runner_pid: int) -> list[int]:
    """Process ids of the notebook kernels the runner started (their parent is the runner), read
    from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[1]) == runner_pid and b"ipykernel_launcher" in cmdline:
            out.append(int(stat.parent.name))
    return sorted(out)


def kill_during(out: Path, kind: str, at_s: float, study: tuple[str, ...] = STUDY, *, timeout: float = 900) -> str:
    """Run the study into ``out`` and kill the runner (or one kernel) ``at_s`` seconds in."""
    proc = subprocess.Popen(command(out, study), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    t0 = time.monotonic()
    killed = "nothing (the run finished first)"
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if time.monotonic() - t0 >= at_s:
            if kind == "kill-runner":  # and its kernels (sessions of their own), as a lost machine would
                kernels = _kernels(proc.pid)
                os.killpg(proc.pid, signal.SIGKILL)
                for pid in kernels:
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGKILL)
                killed = f"the runner and {len(kernels)} kernel(s) at {time.monotonic() - t0:.1f} s"
                break
            kernels = _kernels(proc.pid)
            if kernels:
                os.kill(kernels[0], signal.SIGKILL)
                killed = f"a kernel at {time.monotonic() - t0:.1f} s"
                break
        time.sleep(0.05)
    proc.wait(timeout=timeout)
    return killed


def _named(path: Path, out: Path, text: str) -> bool:
    return str(path) in text or str(path.relative_to(out)) in text


def trial(index: int, kind: str, reference: Path, expected: dict[str, bytes], work: Path, ref_s: float,
          rng: np.random.Generator, study: tuple[str, ...] = STUDY) -> Trial:
    out = work / f"trial{index:03d}"
    shutil.rmtree(out, ignore_errors=True)
    target = None
    if kind in ("kill-runner", "kill-kernel"):
        what = kill_during(out, kind, float(rng.uniform(1.0, 0.8 * ref_s)), study)
    else:
        shutil.copytree(reference, out)
        files = _files(out)
        target = files[int(rng.integers(len(files)))]
        what = f"{target.relative_to(out)} {damage(target, kind, rng)}"
    text = ""
    for _ in range(2):  # a failed task (a killed kernel) is finished by the next run
        res = run_study(out, study)
        text += res.stdout + res.stderr
        if res.returncode != 1:
            break
    if res.returncode == 0:
        got = tables(out)
        if got == expected:
            outcome = Trial(index, kind, what, "same tables")
        else:
            diff = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
            outcome = Trial(index, kind, what, "DIFFERENT NUMBERS", ", ".join(diff))
    elif target is not None and _named(target, out, text) and "Traceback" not in text:
        last = [line for line in text.splitlines() if str(target.name) in line][-1].strip()
        outcome = Trial(index, kind, what, "named the file", last[:300])
    else:
        tail = " | ".join(text.strip().splitlines()[-3:])
        outcome = Trial(index, kind, what, f"UNCLEAR FAILURE (exit {res.returncode})", tail[:400])
    shutil.rmtree(out, ignore_errors=True)
    return outcome


def run_trials(n: int, *, seed: int, work: Path, kinds: tuple[str, ...] = KINDS, study: tuple[str, ...] = STUDY,
               say=print) -> list[Trial]:
    """``n`` seeded trials (kinds in turn, so every kind runs), after one uninterrupted reference run."""
    work.mkdir(parents=True, exist_ok=True)
    reference = work / "reference"
    shutil.rmtree(reference, ignore_errors=True)
    t0 = time.monotonic()
    res = run_study(reference, study)
    ref_s = time.monotonic() - t0
    if res.returncode != 0:
        raise RuntimeError(f"the reference run failed: {res.stderr[-2000:]}")
    expected = tables(reference)
    say(f"reference run: {ref_s:.0f} s, {len(_files(reference))} files, tables {sorted(expected)}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = trial(i, kinds[i % len(kinds)], reference, expected, work, ref_s, rng, study)
        say(str(t))
        out.append(t)
    return out


def summary(trials: list[Trial]) -> str:
    counts = collections.Counter((t.kind, t.outcome if t.outcome in GOOD else "BAD") for t in trials)
    kinds = sorted({t.kind for t in trials}, key=KINDS.index)
    lines = [f"{k:<11} " + ", ".join(f"{o} {counts[(k, o)]}" for o in (*GOOD, "BAD") if counts[(k, o)])
             for k in kinds]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="fault-injection", help="working folder (default: ./fault-injection)")
    args = p.parse_args(argv)
    trials = run_trials(args.trials, seed=args.seed, work=Path(args.work))
    print(summary(trials))
    bad = [t for t in trials if t.outcome not in GOOD]
    print(f"fault_injection: trials={len(trials)} good={len(trials) - len(bad)} bad={len(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
