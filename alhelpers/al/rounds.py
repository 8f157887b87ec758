"""The round driver both tracks' AL loops run on: resume, rounds, checkpoints, pool exhaustion.

A loop supplies its *round body*: given the round number and the strategies still running, it
trains, evaluates and selects, and returns one :class:`Step` per strategy (the round's tidy row,
the points it queried, an optional payload to checkpoint). Everything else is here:

* every strategy starts from the same initial labelled set (so strategies compare paired by
  seed), and its labelled set grows by the points it queried;
* after each round every strategy's step is checkpointed (:class:`RoundCheckpoints`), and a rerun
  resumes after the last round that *every* strategy finished — rounds are computed for all
  strategies together, so a resumed run is identical to an uninterrupted one;
* a strategy that queried nothing before the last round has run out of pool and stops;
* an optional :class:`Budget` is checked before each round.

Random streams are never carried across rounds: the body derives each from (seed, strategy,
round) with :func:`alhelpers.al.seeding.stream`, which is what makes resuming exact.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alhelpers.al.checkpoints import RoundCheckpoints
from alhelpers.files import UnreadableFileError
from alhelpers.threads import follow_thread_budget

__all__ = ["Budget", "BudgetExceeded", "Step", "Track", "run_rounds"]


@dataclass
class Track:
    """Where one strategy stands: its labelled points, rows and payloads so far, whether it ended."""

    strategy: str
    labelled: np.ndarray
    rows: list[dict] = field(default_factory=list)
    extras: list[dict] = field(default_factory=list)  # the checkpointed payloads, one per round
    exhausted: bool = False
    state: Any = None  # the loop's own (not checkpointed; rebuilt from ``extras`` on resume)
    snapshot: Any = None  # on resume: the snapshot the last finished round left (None if none)


@dataclass
class Step:
    """What a round body returns for one strategy."""

    row: dict
    queried: np.ndarray
    extra: dict | None = None
    snapshot: Any = None  # what the next round needs and the row cannot rebuild (saved with torch.save)


class BudgetExceeded(RuntimeError):
    """A run stopped before a round that would exceed its wall-time or memory budget."""


@dataclass
class Budget:
    """Wall-time and memory limits for a run, checked before each round.

    ``max_wall_s``: seconds from the budget's creation; a round is not started when the elapsed
    time plus the previous round's duration would pass it. ``max_ram_mb``: resident memory of this
    process; no round is started above 90 % of it. ``None`` means no limit.
    """

    max_wall_s: float | None = None
    max_ram_mb: float | None = None
    clock: Callable[[], float] = time.perf_counter  # injectable for tests
    started: float | None = None  # default: the clock at creation

    def __post_init__(self) -> None:
        for name, value in (("max_wall_s", self.max_wall_s), ("max_ram_mb", self.max_ram_mb)):
            if value is not None and not _positive(value):
                raise ValueError(f"Budget({name}={value!r}): a budget must be a finite number > 0 (None: no limit)")
        if self.started is None:
            self.started = self.clock()

    @classmethod
    def from_params(cls, max_wall_s: object = 0, max_ram_mb: object = 0, *,
                    names: tuple[str, str] = ("MAX_WALL_S", "MAX_RAM_MB")) -> Budget:
        """The budget of the notebook parameters ``MAX_WALL_S`` / ``MAX_RAM_MB`` (the runner's
        ``--max-wall-s`` / ``--max-ram-mb``, named by ``names``): 0 means no limit; a negative,
        NaN or infinite value, or one that is not a number, is refused naming the parameter (NaN
        would otherwise silently mean no budget)."""
        limits = []
        for name, value, unit in ((names[0], max_wall_s, "seconds"), (names[1], max_ram_mb, "MB")):
            number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not number or not (value == 0 or _positive(value)):
                example = f"{name} 600" if name.startswith("--") else f"{name} = 0"
                raise ValueError(f"{name} must be a finite number of {unit} >= 0 (0: no limit), e.g. "
                                 f"{example}; got {value!r}")
            limits.append(float(value) or None)
        return cls(max_wall_s=limits[0], max_ram_mb=limits[1])

    @property
    def limited(self) -> bool:
        return self.max_wall_s is not None or self.max_ram_mb is not None

    def check(self, *, next_round_s: float, done: int, total: int) -> None:
        how = ("Every finished round is checkpointed: run the notebook (or the study command) "
               "again, with a larger budget if needed, and it continues from round "
               f"{done} of {total}.")
        if self.max_wall_s is not None:
            elapsed = self.clock() - self.started
            if elapsed + next_round_s > self.max_wall_s:
                raise BudgetExceeded(
                    f"wall-time budget of {self.max_wall_s:g} s would be exceeded ({elapsed:.1f} s "
                    f"used, the last round took {next_round_s:.1f} s). {how}")
        if self.max_ram_mb is not None:
            import psutil

            rss = psutil.Process().memory_info().rss / 2**20
            if rss > 0.9 * self.max_ram_mb:
                raise BudgetExceeded(
                    f"memory budget of {self.max_ram_mb:g} MB nearly reached ({rss:.0f} MB in use). {how}")


def _positive(value: object) -> bool:
    """A finite number above 0."""
    try:
        return math.isfinite(float(value)) and float(value) > 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _grow(labelled: np.ndarray, queried: Sequence[int], keep_order: bool) -> np.ndarray:
    grown = np.concatenate([labelled, np.asarray(queried, dtype=np.int64)])
    return grown if keep_order else np.sort(grown)


def _resume(strategies: Sequence[str], n_rounds: int, init: np.ndarray, store: RoundCheckpoints | None,
            keep_order: bool) -> tuple[list[Track], int]:
    loaded = {s: store.load(s, n_rounds) if store else [] for s in strategies}

    def ended(ck: list[dict]) -> bool:  # ran out of pool before the last round
        return bool(ck) and not ck[-1]["queried"] and ck[-1]["row"]["round"] < n_rounds - 1

    snapshots: dict[str, Any] = {}
    while True:  # the last finished round's snapshots; an unreadable one: that round again
        n_done = min((n_rounds if ended(ck) else len(ck)) for ck in loaded.values())
        retry = False
        for s, ck in loaded.items():
            last = min(n_done, len(ck)) - 1
            if (store is None or last < 0 or n_done >= n_rounds or ended(ck[: n_done]) or not ck[last].get("snapshot")
                    or s in snapshots):  # nothing left to run: no snapshot needed
                continue
            try:
                snapshots[s] = store.load_snapshot(s, last)
            except UnreadableFileError as err:
                warnings.warn(str(err), stacklevel=4)
                store.drop(s, last)
                loaded[s] = ck[:last]
                snapshots.clear()
                retry = True
                break
        if not retry:
            break
    tracks = []
    for s, ck in loaded.items():
        ck = ck[:n_done]
        labelled = np.asarray(init, dtype=np.int64)
        for c in ck:
            labelled = _grow(labelled, c["queried"], keep_order)
        tracks.append(Track(s, labelled, [c["row"] for c in ck], [c.get("extra", {}) for c in ck],
                            exhausted=ended(ck), snapshot=snapshots.get(s)))
    return tracks, n_done


def run_rounds(
    strategies: Sequence[str],
    n_rounds: int,
    init: np.ndarray,
    body: Callable[[int, list[Track]], Sequence[Step]],
    *,
    checkpoints: RoundCheckpoints | None = None,
    keep_order: bool = False,
    budget: Budget | None = None,
    stop_after_round: int | None = None,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
    label: str = "",
) -> tuple[list[Track], int]:
    """Run ``body`` round by round for every strategy; returns the tracks and the resumed rounds.

    ``keep_order``: the labelled set keeps the order of labelling (else it is kept sorted).
    ``stop_after_round`` ends early after that round (tests and budgets); ``progress`` wraps the
    range of rounds (e.g. ``tqdm``); ``label`` names the run in the pool-exhausted warnings.
    """
    if budget is not None and budget.limited and checkpoints is None:
        raise ValueError("a budget needs checkpoints, or the rounds done before the stop are lost")
    tracks, n_done = _resume(strategies, n_rounds, init, checkpoints, keep_order)
    rounds: Iterable[int] = range(n_done, n_rounds)
    if progress is not None:
        rounds = progress(rounds)
    last_round_s = 0.0
    for rnd in rounds:
        active = [t for t in tracks if not t.exhausted]
        if not active:
            break
        if budget is not None:
            budget.check(next_round_s=last_round_s, done=rnd, total=n_rounds)
        follow_thread_budget()  # under a runner: the cores the grid's other notebooks left free
        t_round = time.perf_counter()
        steps = body(rnd, active)
        for track, step in zip(active, steps, strict=True):
            queried = np.asarray(step.queried, dtype=np.int64)
            track.rows.append(step.row)
            track.extras.append(step.extra or {})
            if checkpoints is not None:
                checkpoints.save(track.strategy, rnd, step.row, queried, step.extra, step.snapshot)
            track.labelled = _grow(track.labelled, queried, keep_order)
            if len(queried) == 0 and rnd < n_rounds - 1:
                track.exhausted = True
        last_round_s = time.perf_counter() - t_round
        if stop_after_round is not None and rnd >= stop_after_round:
            break
    if checkpoints is not None and all(t.exhausted or len(t.rows) == n_rounds for t in tracks):
        checkpoints.drop_snapshots(strategies)  # finished: no round will start from them
    for t in tracks:
        if t.exhausted and t.rows and t.rows[-1].get("note"):
            warnings.warn(f"{label}{t.strategy}: {t.rows[-1]['note']}", stacklevel=3)
    return tracks, n_done
