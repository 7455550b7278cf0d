"""Loss-curve CSV files: the format, and one clear error per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optctl.errors import CurveError
from optctl.io.curves import load_curve, load_curves, write_curve


def _write(tmp_path: Path, text: str, name: str = "run.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_rows_expand_to_a_per_update_schedule(tmp_path: Path) -> None:
    p = _write(tmp_path, "# pilot run\nstep,lr,loss,batch_size\n0,0.1,2.0,8\n3,0.05,1.0,16\n5,0.05,0.8,16\n")
    c = load_curve(p)
    assert c.name == "run" and c.T == 5
    np.testing.assert_array_equal(c.steps, [0, 3, 5])
    np.testing.assert_array_equal(c.lr, [0.1, 0.1, 0.1, 0.05, 0.05])
    np.testing.assert_array_equal(c.batch_size, [8, 8, 8, 16, 16])
    assert c.final_loss == 0.8


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    """Spreadsheet programs save UTF-8 CSVs with a BOM; it must not hide the 'step' column."""
    p = tmp_path / "excel.csv"
    p.write_bytes(b"\xef\xbb\xbfstep,lr,loss\n0,0.1,1\n1,0.1,0.9\n2,0.1,0.8\n")
    c = load_curve(p)
    np.testing.assert_array_equal(c.steps, [0, 1, 2])


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    lr = np.concatenate([np.full(4, 0.2), np.full(4, 0.1)])
    p = tmp_path / "w.csv"
    write_curve(p, np.array([0, 2, 4, 8]), lr, np.array([3.0, 2.0, 1.5, 1.0]), batch_size=4)
    c = load_curve(p)
    np.testing.assert_array_equal(c.lr, lr)
    np.testing.assert_array_equal(c.batch_size, np.full(8, 4.0))


@pytest.mark.parametrize(("text", "expected"), [
    ("step,lr\n0,0.1\n1,0.1\n2,0.1\n", "lacks the column 'loss'"),
    ("step,lr,loss,foo\n0,0.1,1,2\n", "unknown column 'foo'"),
    ("step,lr,loss\n0,0.1,2\n2,0.1,1\n1,0.1,0.5\n", "line 4, column 'step': 1 does not increase"),
    ("step,lr,loss\n0,0.1,2\n1,0.1,nan\n2,0.1,1\n", "line 3, column 'loss': nan is not a finite"),
    ("step,lr,loss\n0,0.1,2\n1,abc,1\n2,0.1,1\n", "line 3, column 'lr': 'abc' is not a number"),
    ("step,lr,loss\n0,0.1,2\n1,0.1\n2,0.1,1\n", "line 3: 2 fields but the header has 3"),
    ("step,lr,loss\n0,-0.1,2\n1,0.1,1\n2,0.1,1\n", "column 'lr': -0.1 must be >= 0"),
    ("step,lr,loss\n0,0.1,2\n1,1e308,1\n2,0.1,1\n", "line 3, column 'lr': 1e.308 is above 1e.06"),
    ("step,lr,loss\n0,0.1,2\n1,0.1,0\n2,0.1,1\n", "column 'loss': 0.0 must be > 0"),
    ("step,lr,loss\n1,0.1,2\n2,0.1,1\n3,0.1,1\n", "must start at step 0"),
    ("step,lr,loss\n0,0.1,2\n1.5,0.1,1\n3,0.1,1\n", "not an integer"),
    ("step,lr,loss\n0,0.1,2\n1,0.1,1\n", "at least 3 rows"),
    ("step,lr,loss,momentum\n0,0.1,2,0.9\n1,0.1,1,0.9\n2,0.1,1,0.9\n", "momentum': 0.9 is not 0"),
    ("step,lr,loss,batch_size\n0,0.1,2,0\n1,0.1,1,1\n2,0.1,1,1\n", "batch_size': 0.0 must be >= 1"),
    ("", "the file is empty"),
])
def test_bad_files_name_the_line_column_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(CurveError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_curve(_write(tmp_path, text))


def test_missing_file_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(CurveError, match="no such file"):
        load_curve(tmp_path / "nope.csv")
    a = _write(tmp_path, "step,lr,loss\n0,0.1,2\n1,0.1,1\n2,0.1,1\n", "x.csv")
    (tmp_path / "d").mkdir()
    b = _write(tmp_path / "d", "step,lr,loss\n0,0.1,2\n1,0.1,1\n2,0.1,1\n", "x.csv")
    with pytest.raises(CurveError, match="distinct name"):
        load_curves([a, b])
    with pytest.raises(CurveError, match="no curve files"):
        load_curves([])
