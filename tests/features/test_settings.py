"""The configuration tree: environment, file and defaults reach the code that uses them."""

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import repo
from features.settings import MemberwiseSettings, explain, get_settings
from features.tags import compute_tags
from pipelines.cli import app as cli
from serving.app import create_app
from training.churn import train_churn

AS_OF = date(2024, 6, 30)
REF = pd.Timestamp("2024-07-01")  # end of the as-of day


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No MEMBERWISE_ variable of the machine leaks in; the home is an empty folder."""
    import os

    for name in list(os.environ):
        if name.startswith("MEMBERWISE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MEMBERWISE_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _orders(days_before_ref: dict[str, list[int]]) -> pd.DataFrame:
    rows = [
        {"order_id": f"{m}{i}", "member_id": m, "ts": REF - pd.Timedelta(days=d),
         "product_id": "p1", "quantity": 1.0, "unit_price": 10.0}
        for m, days in days_before_ref.items() for i, d in enumerate(days)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_a_rules_file_set_in_the_environment_changes_the_tags(monkeypatch, tmp_path):
    from features.rules import live_rules_path, load_rules

    ol = _orders({"a": [20, 50], "b": [5, 40]})
    default = compute_tags({"order_lines": ol}, AS_OF, MemberwiseSettings().tags)
    assert not default["dormant"].any()  # 20 days is not the default 60
    rules = tmp_path / "mine.yaml"
    rules.write_text("tags:\n  - name: dormant\n    rule: recency_days > 10\n")
    monkeypatch.setenv("MEMBERWISE_TAGS__RULES_FILE", str(rules))
    s = MemberwiseSettings()
    tags = compute_tags({"order_lines": ol}, AS_OF, s.tags, load_rules(live_rules_path(s)))
    assert dict(zip(tags["member_id"], tags["dormant"], strict=True)) == {"a": True, "b": False}


def _churn_frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ol = _orders({f"m{i}": sorted(rng.integers(1, 300, size=3).tolist()) for i in range(n)})
    tags = compute_tags({"order_lines": ol}, AS_OF)
    return tags.assign(churned=rng.integers(0, 2, size=len(tags)))


def test_a_training_value_set_in_the_environment_reaches_the_trainer(monkeypatch):
    monkeypatch.setenv("MEMBERWISE_TRAINING__HORIZON_DAYS", "60")
    monkeypatch.setenv("MEMBERWISE_CHURN__MAX_ITER", "7")
    s = MemberwiseSettings()
    result = train_churn(_churn_frame(), repo.CHURN_FEATURES, s.training, s.churn)
    assert result.params["horizon_days"] == 60 and result.params["max_iter"] == 7
    pipe = result.shipped.calibrated_classifiers_[0].estimator
    assert pipe.named_steps["bg_nbd"].horizon_days == 60
    assert pipe.named_steps["boost"].max_iter == 7


def test_a_serving_value_set_in_the_environment_is_what_the_app_serves(monkeypatch):
    monkeypatch.setenv("MEMBERWISE_SERVING__DEFAULT_PRODUCTS", "3")
    app = create_app()
    assert app.state.memberwise.settings.serving.default_products == 3
    # an app built for explicit settings answers its routes with those same settings
    explicit = MemberwiseSettings(serving={"default_products": 4})
    app = create_app(explicit)
    assert app.dependency_overrides[get_settings]() is explicit


def test_the_file_in_the_home_sits_below_the_environment_and_arguments(monkeypatch, tmp_path):
    (tmp_path / "memberwise.toml").write_text(
        "[training]\nhorizon_days = 45\nseed = 3\n\n[serving]\nport = 9000\n\n"
        '[products.hybrid]\nfactors = 32\n\n[send_time]\nmessage_channels = ["email", "push"]\n'
    )
    s = MemberwiseSettings()
    assert (s.training.horizon_days, s.training.seed, s.serving.port) == (45, 3, 9000)
    assert s.products.hybrid.factors == 32 and s.products.hybrid.iterations == 15
    assert s.send_time.message_channels == ("email", "push")
    monkeypatch.setenv("MEMBERWISE_TRAINING__SEED", "5")
    s = MemberwiseSettings(serving={"port": 9100})
    assert (s.training.horizon_days, s.training.seed, s.serving.port) == (45, 5, 9100)


def test_the_file_of_another_home_is_read_when_the_home_is_given(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "memberwise.toml").write_text("[tags]\ntop_categories = 5\n")
    assert MemberwiseSettings().tags.top_categories == 3
    assert MemberwiseSettings(home=other).tags.top_categories == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[trainig]\nseed = 1\n", "unknown section"),
        ("[training]\nhorizon = 60\n", "horizon"),
        ('home = "/elsewhere"\n', "home"),
        ("[serving]\nport = 'eighty'\n", "port"),
    ],
)
def test_a_bad_file_is_an_error_that_names_the_problem(tmp_path, body, message):
    (tmp_path / "memberwise.toml").write_text(body)
    with pytest.raises(ValueError, match=message):
        MemberwiseSettings()


def test_a_misspelt_environment_name_is_an_error(monkeypatch):
    monkeypatch.setenv("MEMBERWISE_TRAINING__HORIZON", "60")
    with pytest.raises(ValueError, match="horizon"):
        MemberwiseSettings()


def test_the_store_names_of_before_the_tree_still_work(monkeypatch):
    monkeypatch.setenv("MEMBERWISE_ONLINE_STORE", "redis")
    monkeypatch.setenv("MEMBERWISE_MLFLOW_TRACKING_URI", "postgresql://db/mlflow")
    s = MemberwiseSettings()
    assert s.stores.online_store == "redis"
    assert s.tracking_uri == "postgresql://db/mlflow"
    monkeypatch.setenv("MEMBERWISE_STORES__ONLINE_STORE", "sqlite")  # the tree's name wins
    assert MemberwiseSettings().stores.online_store == "sqlite"


def _all_names(model, prefix=""):
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if hasattr(value, "model_fields"):
            out += _all_names(value, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_memberwise_config_lists_every_setting_with_its_source(monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "memberwise.toml").write_text("[training]\nhorizon_days = 45\n")
    monkeypatch.setenv("MEMBERWISE_SERVING__PORT", "9001")
    monkeypatch.setenv("MEMBERWISE_REDIS_URL", "redis.internal:6379")
    runner = CliRunner()
    res = runner.invoke(cli, ["config", "--home", str(home), "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert list(rows) == _all_names(MemberwiseSettings(home=home))
    assert len(rows) > 100 and all(r["description"] for r in rows.values())
    assert rows["training.horizon_days"] | {"description": ""} == {
        "name": "training.horizon_days", "value": 45, "source": "file", "description": ""}  # fmt: skip
    assert (rows["serving.port"]["value"], rows["serving.port"]["source"]) == (9001, "environment")
    assert rows["stores.redis_url"]["source"] == "environment"
    assert (rows["tags.top_categories"]["value"], rows["tags.top_categories"]["source"]) == (3, "default")  # fmt: skip
    assert rows["products.item_cosine.K"]["source"] == "default"
    assert rows["home"]["value"] == str(home.resolve())

    text = runner.invoke(cli, ["config", "--home", str(home)])
    assert text.exit_code == 0, text.output
    lines = {line.split()[0]: line.split()[1:] for line in text.stdout.splitlines()}
    assert set(lines) == set(rows)
    assert lines["training.horizon_days"] == ["file", "45"]
    assert lines["serving.port"] == ["environment", "9001"]
    assert lines["training.seed"] == ["default", "0"]


def test_memberwise_config_reports_a_bad_value_without_a_traceback(monkeypatch):
    monkeypatch.setenv("MEMBERWISE_TRAINING__HORIZON_DAYS", "ninety")
    res = CliRunner().invoke(cli, ["config"])
    assert res.exit_code == 2 and "horizon_days" in res.output


def test_explain_names_arguments_as_the_highest_source():
    rows = {r["name"]: r for r in explain(training={"seed": 9})}
    assert (rows["training.seed"]["value"], rows["training.seed"]["source"]) == (9, "argument")
