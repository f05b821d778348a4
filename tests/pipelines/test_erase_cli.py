"""`memberwise erase ID...`."""

from __future__ import annotations

from typer.testing import CliRunner

from features import erasure
from features.settings import MemberwiseSettings
from pipelines.cli import app


def test_erase_records_digests_and_refuses_empty_ids(tmp_path):
    res = CliRunner().invoke(app, ["erase", "M1", "M2", "M1", "--home", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "erased 2 member(s)" in res.output
    s = MemberwiseSettings(home=tmp_path)
    assert len(erasure.suppressed(s)) == 2 and "M1" not in s.suppression_file.read_text()
    bad = CliRunner().invoke(app, ["erase", " ", "--home", str(tmp_path)])
    assert bad.exit_code == 2 and "not a member id" in bad.output
