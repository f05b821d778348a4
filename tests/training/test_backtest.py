"""Backtest helpers for send time: baselines held to the quiet hours, and their ceiling."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.backtest import member_mode_hours, reachable_share


def test_member_mode_within_allowed_hours():
    ts = pd.to_datetime(
        ["2025-05-05 23:10"] * 3 + ["2025-05-05 12:00"] * 2 + ["2025-05-06 09:00"]
    )  # Monday 23:00 three times, Monday 12:00 twice, Tuesday 09:00 once
    eng = pd.DataFrame({"member_id": ["a"] * 5 + ["b"], "ts": ts})
    assert member_mode_hours(eng, {}, 0) == {"a": 23, "b": 33}
    allowed = np.ones(168, dtype=bool)
    allowed[np.arange(168) % 24 >= 22] = False
    assert member_mode_hours(eng, {}, 0, allowed) == {"a": 12, "b": 33}
    allowed[33] = False
    assert member_mode_hours(eng, {}, 0, allowed) == {"a": 12}  # b has no allowed hour


def test_reachable_share_is_the_ceiling_under_quiet_hours():
    allowed = (np.arange(168) % 24 >= 8) & (np.arange(168) % 24 < 22)
    # 22:00 and 07:00 are within an hour of 21:00 and 08:00; 23:00 and 03:00 are not
    assert reachable_share(np.array([22, 7, 23, 3, 12]), allowed) == 0.6
    assert reachable_share(np.array([23]), np.ones(168, dtype=bool)) == 1.0
