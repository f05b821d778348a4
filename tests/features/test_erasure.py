"""Suppressions: salted digests, never ids; frames and Parquet files scrubbed of them."""

from __future__ import annotations

import pandas as pd

from features import erasure
from features.settings import MemberwiseSettings


def test_suppressions_hold_salted_digests_not_ids(tmp_path):
    s = MemberwiseSettings(home=tmp_path)
    digests = erasure.suppress(s, ["M1", "M1", "M2"])
    text = s.suppression_file.read_text()
    assert "M1" not in text and len(text.split()) == 2 and digests[0] == digests[1]
    salt = erasure.salt(s)
    assert salt is not None and len(salt) == 32
    assert (s.suppression_file.parent / "salt").stat().st_mode & 0o077 == 0
    other = MemberwiseSettings(home=tmp_path / "other")
    assert erasure.suppress(other, ["M1"])[0] != digests[0]  # each home has its own salt


def test_erased_members_are_dropped_from_frames_and_files(tmp_path):
    s = MemberwiseSettings(home=tmp_path)
    df = pd.DataFrame({"member_id": ["M1", "M2", "M3", "M2"], "x": [1, 2, 3, 4]})
    assert not erasure.erased_mask(s, df["member_id"]).any()  # nothing erased yet
    erasure.suppress(s, ["M2"])
    kept, n = erasure.scrub_frame(s, df)
    assert n == 2 and kept["member_id"].tolist() == ["M1", "M3"]
    path = tmp_path / "tags.parquet"
    df.to_parquet(path)
    link = tmp_path / "linked.parquet"
    link.hardlink_to(path)
    assert erasure.scrub_parquet(s, path) == 2
    assert pd.read_parquet(path)["member_id"].tolist() == ["M1", "M3"]
    assert len(pd.read_parquet(link)) == 4  # a rename: the other link keeps its content
