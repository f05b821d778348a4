"""Start-up against a home without models: a clear reason, nothing written, no paths."""

from __future__ import annotations

import logging

from features.settings import MemberwiseSettings
from serving.state import AppState, public_error


def test_a_home_without_mlflow_db_is_reported_not_created(tmp_path, caplog):
    home = tmp_path / "home"
    home.mkdir()
    state = AppState(settings=MemberwiseSettings(home=home))
    with caplog.at_level(logging.ERROR, logger="serving.state"):
        state.load()
    assert not state.ready and state.error is not None
    assert "no MLflow database" in state.error and str(tmp_path) not in state.error
    assert not (home / "mlflow" / "mlflow.db").exists()
    assert sorted(p.name for p in home.iterdir()) == []  # serving wrote nothing into the home
    assert "not loaded" in caplog.text  # the details go to the log


def test_other_start_up_errors_show_only_their_kind():
    exc = OSError("could not connect to redis at 10.0.0.5:6379 /srv/home/feast")
    assert public_error(exc) == "OSError (details in the server log)"
