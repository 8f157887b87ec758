"""Result tables read back as they were written: ids stay text."""

from __future__ import annotations

import pandas as pd
import pytest

from alhelpers.files import read_csv, write_csv
from alhelpers.layout import Layout
from alhelpers.stages import read_table


@pytest.mark.parametrize("code", ["609744081026", "12e456789012", "000000000001"])
def test_an_id_made_of_digits_is_read_back_as_the_same_text(tmp_path, code):
    # A code or configuration id is a hex digest: about 1 in 300 is only digits (or digits and one
    # "e"), which pandas' CSV reader turns into a number — and the check that a table was made by
    # this code then fails for no reason (it did, in a test run).
    layout = Layout.at(tmp_path)
    table = pd.DataFrame({"mae": [0.1, 0.2], "config_id": ["1234567890", "1234567890"], "code_id": [code, code]})
    write_csv(layout.table("final_table"), table)
    pd.testing.assert_frame_equal(read_table(layout, "final_table"), table)
    pd.testing.assert_frame_equal(read_csv(layout.table("final_table")), table)
    assert read_csv(write_csv(tmp_path / "plain.csv", table[["mae"]]))["mae"].tolist() == [0.1, 0.2]
