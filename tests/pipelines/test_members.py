"""The member table a run writes, a tag added in YAML only, and the KPI report."""

import json
import re
from datetime import date

import pandas as pd
import pytest

from features import member_table
from features.rules import DEFAULT_RULES, rules_version
from features.settings import MemberwiseSettings
from pipelines.members import order_dates
from pipelines.report import build_report, write_report

VIP = """
  - name: vip_at_risk
    description: a top-tier member the churn model sees leaving
    owner: retention
    rule: value_tier in ("platinum", "gold") and churn_risk >= 0.6
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from pipelines.run import run_pipeline
    from pipelines.synthetic import generate

    data = tmp_path_factory.mktemp("shop")
    generate(data, members=400, seed=3)
    rules = tmp_path_factory.mktemp("rules") / "tags.yaml"
    rules.write_text(DEFAULT_RULES.read_text().replace("\ngroups:", VIP + "\ngroups:", 1))
    home = tmp_path_factory.mktemp("home")
    settings = MemberwiseSettings(home=home, products={"hybrid": {"iterations": 5, "factors": 16}})
    report = run_pipeline(data, date(2025, 12, 31), settings, progress=lambda _: None,
                          tags_file=rules)  # fmt: skip
    return settings, report, rules


@pytest.mark.slow
def test_a_tag_added_in_yaml_reaches_the_table_and_score(run):
    from pipelines.score import score_members

    settings, report, rules = run
    table = pd.read_parquet(member_table.path(settings.members_dir))
    assert member_table.missing_columns(table) == []
    assert table["member_id"].is_unique and len(table) == report["members"]
    assert (table["tag_version"] == rules_version(rules)).all()
    assert report["tag_version"] == rules_version(rules)
    expected = table["value_tier"].isin(["platinum", "gold"]) & (table["churn_risk"] >= 0.6)
    has = table["tags"].map(lambda t: "vip_at_risk" in t)
    assert expected.sum() > 0 and (has == expected).all()
    scores = score_members(settings, progress=lambda _: None).set_index("member_id")
    in_score = scores["tags"].map(lambda t: "vip_at_risk" in t)
    assert (in_score.reindex(table["member_id"]).to_numpy() == expected.to_numpy()).all()
    assert {"level", "growth_value"} <= set(scores.columns)
    # the tag version is recorded on the Feast feature view and the MLflow runs
    from features import repo

    view = repo.feature_store(settings).get_feature_view(repo.TAGS_VIEW)
    assert view.tags["tag_version"] == rules_version(rules)
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True)
    trained = runs[runs["tags.model"].notna()]
    assert (trained["tags.tag_version"] == rules_version(rules)).all()


@pytest.mark.slow
def test_every_reason_quotes_the_value_and_the_threshold(run):
    settings, _, _ = run
    table = pd.read_parquet(member_table.path(settings.members_dir))
    number = re.compile(r"-?\d+(\.\d+)?")
    checked = 0
    for tags, reasons in zip(table["tags"], table["tag_reasons"], strict=True):
        given = json.loads(reasons)
        assert set(given) == set(tags)
        for tag, why in given.items():
            # "<tag>: ... feature VALUE op THRESHOLD ...": a comparison with both sides quoted
            assert why.startswith(f"{tag}: ")
            assert re.search(r"\b[a-z_0-9]+ (-?[\d.]+|'[^']*') (<=|>=|<|>|==|!=|in|not in) ", why), why  # fmt: skip
            assert len(number.findall(why)) >= 2 or " in (" in why, why
            checked += 1
    assert checked > 100


@pytest.mark.slow
def test_report_shows_prevalence_and_kpis(run):
    settings, _, _ = run
    path, rep = write_report(settings, log=True)
    assert path.exists() and path.with_suffix(".png").exists()
    table = pd.read_parquet(member_table.path(settings.members_dir))
    prev = {p["tag"]: p["members"] for p in rep["prevalence"]}
    assert prev["vip_at_risk"] == int(table["tags"].map(lambda t: "vip_at_risk" in t).sum())
    assert rep["segments"]["all members"]["members"] == len(table)
    assert rep["cohorts"]


def _shop(lines, members=None):
    class Shop:
        tables = {"order_lines": lines, **({"members": members} if members is not None else {})}

        def get(self, name):
            return self.tables.get(name)

    return Shop()


def test_order_dates_retention_and_activity():
    ts = pd.to_datetime
    lines = pd.DataFrame({
        "member_id": ["a", "a", "b", "b", "c"],
        "order_id": ["1", "2", "3", "4", "5"],
        "ts": ts(["2025-01-01", "2025-01-05", "2025-01-01", "2025-03-01", "2025-06-28"]),
        "quantity": [1.0, 1.0, 1.0, 1.0, 1.0], "unit_price": [10.0, 10.0, 5.0, 5.0, 5.0],
    })  # fmt: skip
    out = order_dates(_shop(lines), date(2025, 6, 30)).set_index("member_id")
    assert out.loc["a", "retained_7d"] and out.loc["a", "retained_30d"]
    assert not out.loc["b", "retained_30d"] and out.loc["b", "retained_90d"]
    assert pd.isna(out.loc["c", "retained_7d"])  # first order 2 days old: not yet known
    assert out.loc["c", "active_30d"] and not out.loc["a", "active_30d"]
    assert out["orders"].to_dict() == {"a": 2, "b": 2, "c": 1}


def test_report_kpis_on_a_known_table():
    table = pd.DataFrame({
        "member_id": ["a", "b", "c", "d"], "as_of": "2025-06-30", "tag_version": "v",
        "tags": [["x"], ["x", "y"], [], ["y"]], "orders": [2, 1, 0, 4],
        "spend": [100.0, 50.0, 0.0, 200.0], "active_30d": [True, False, False, True],
        "clv_12m": [10.0, 20.0, 0.0, 30.0],
        "first_order_date": [date(2025, 1, 1), date(2025, 2, 1), None, date(2025, 1, 9)],
        "retained_7d": pd.array([True, False, None, True], dtype="boolean"),
        "retained_30d": pd.array([True, False, None, True], dtype="boolean"),
        "retained_90d": pd.array([True, None, None, True], dtype="boolean"),
    })  # fmt: skip
    rep = build_report(table)
    x = rep["segments"]["x"]
    assert x["members"] == 2 and x["arpu"] == 75.0 and x["aov"] == 50.0
    assert x["repurchase_rate"] == 0.5 and x["retention_90d"] == 1.0
    assert {p["tag"]: p["share"] for p in rep["prevalence"]} == {"x": 0.5, "y": 0.5}
    assert [c["cohort"] for c in rep["cohorts"]] == ["2025-01", "2025-02"]
    assert build_report(table, "y")["segments"]["y"]["members"] == 2
