"""The fault-injection script (tests/fault_injection.py): a few trials in the default run, 50 in the
slow one. Every trial must end in the same final tables as an uninterrupted run, bit for bit, or in
one clear message that names the damaged file."""

from __future__ import annotations

import pytest

from fault_injection import GOOD, KINDS, SMALL_STUDY, run_trials, summary


def _check(trials) -> None:
    bad = [str(t) for t in trials if t.outcome not in GOOD]
    assert not bad, "\n".join(bad) + "\n" + summary(trials)


def test_a_few_faults_of_each_file_kind_end_in_the_same_tables_or_a_named_file(tmp_path):
    trials = run_trials(3, seed=7, work=tmp_path, kinds=("truncate", "garbage", "kill-runner"), study=SMALL_STUDY,
                        say=lambda _: None)
    _check(trials)


@pytest.mark.slow
def test_fifty_random_faults_never_change_a_number(tmp_path):
    trials = run_trials(50, seed=0, work=tmp_path, kinds=KINDS)
    assert {t.kind for t in trials} == set(KINDS)
    _check(trials)
