"""Every console page over the in-memory shop: sign-in and scopes, the overview's figures, a
member's tags with reasons, the segment builder's count, rule checking, the models page."""

from __future__ import annotations

import re

from tests.serving.console.conftest import sign_in


def test_pages_need_a_key(console):
    r = console.get("/console/overview", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    assert console.get("/console/signin").status_code == 200


def test_a_storefront_key_cannot_open_the_console(console):
    r = sign_in(console, "mk-storefront")
    assert r.status_code == 403
    assert "cannot open the console" in r.text
    assert "memberwise_console" not in r.headers.get("set-cookie", "")
    # nor by setting the cookie by hand
    console.cookies.set("memberwise_console", "mk-storefront", path="/console")
    assert console.get("/console/overview", follow_redirects=False).status_code == 303


def test_a_wrong_key_is_refused(console):
    r = sign_in(console, "nope")
    assert r.status_code == 401 and "not valid" in r.text


def test_overview_shows_members_and_figures(console, world):
    assert sign_in(console).status_code == 303
    r = console.get("/console/overview")
    assert r.status_code == 200
    n = len(world.tags)
    assert f"{n:,} members" in r.text
    for figure in ("ARPU", "AOV", "repurchase rate", "active in the last 30 days"):
        assert figure in r.text
    assert "Members by lifecycle" in r.text and "retention after 30 days" in r.text
    dormant = int(world.tags["tags"].str.contains("dormant").sum())
    assert f'<th scope="row">dormant</th><td class="n">{dormant:,}</td>' in r.text


def test_member_search_and_a_reason(console, world):
    sign_in(console)
    dormant = world.tags.loc[world.tags["tags"].str.contains("dormant"), "member_id"].iloc[0]
    r = console.get("/console/members", params={"q": dormant})
    assert r.status_code == 200 and f"/console/members/{dormant}" in r.text
    page = console.get(f"/console/members/{dormant}")
    assert page.status_code == 200
    days = int(world.tags.set_index("member_id").loc[dormant, "recency_days"])
    # the reason quotes the member's value and the rule's threshold
    assert re.search(rf"dormant</strong>: [^<]*{days}[^<]*60", page.text), page.text[:3000]
    decision = page.text.split("Current decision", 1)[1]
    assert "<h3>Products</h3>" in decision and "<h3>Send time</h3>" in decision
    assert console.get("/console/members/nobody-here").status_code == 404


def test_segment_preview_counts_and_rejects_bad_values(console, world):
    sign_in(console)
    assert "Segment builder" in console.get("/console/segments").text
    everyone = console.post("/console/segments/preview", data={})
    assert f">{len(world.tags):,}</strong>" in everyone.text
    r = console.post("/console/segments/preview",
                     data={"feature": ["recency_days"], "op": [">"], "value": ["60"]})  # fmt: skip
    expected = int((world.tags["recency_days"] > 60).sum())
    assert f'data-testid="segment-count">{expected:,}<' in r.text
    bad = console.post("/console/segments/preview",
                       data={"feature": ["recency_days"], "op": [">"], "value": ["1; DROP"]})  # fmt: skip
    assert bad.status_code == 200 and "is not a number" in bad.text
    unknown = console.post("/console/segments/preview",
                           data={"feature": ["__class__"], "op": ["=="], "value": ["x"]})  # fmt: skip
    assert "unknown feature" in unknown.text


def test_rules_page_checks_in_place(console):
    sign_in(console)
    page = console.get("/console/rules")
    assert page.status_code == 200 and 'data-testid="rules-version"' in page.text
    bad = "tags:\n  - name: x\n    rule: recency_days > 60 or __import__('os')\n"
    r = console.post("/console/rules/validate", data={"text": bad})
    assert "problem" in r.text and "line 3" in r.text
    good = console.post("/console/rules/validate",
                        data={"text": "tags:\n  - name: x\n    rule: recency_days > 60\n"})  # fmt: skip
    assert "The rules are valid" in good.text


def test_models_page_and_plot_paths(console):
    sign_in(console)
    r = console.get("/console/models")
    assert r.status_code == 200 and "Champions serving now" in r.text
    assert console.get("/console/plots/../../etc/passwd.png").status_code == 404


def test_builder_saves_and_exports_a_segment(console, world):
    sign_in(console)
    form = {"feature": ["recency_days", "tags"], "op": [">", "=="], "value": ["60", "dormant"]}
    tags = world.tags
    expected = int(((tags["recency_days"] > 60) & tags["tags"].str.contains("dormant")).sum())
    r = console.post("/console/segments/preview", data=form)
    assert f'data-testid="segment-count">{expected:,}<' in r.text
    saved = console.post("/console/segments/save", data={**form, "name": "lapsed dormant"})
    assert f"as version 1 ({expected:,} members)" in saved.text
    again = console.post("/console/segments/save", data={**form, "name": "lapsed dormant"})
    assert "as version 2" in again.text
    assert "lapsed dormant" in console.get("/console/segments").text
    bad = console.post("/console/segments/save", data={**form, "name": "../etc"})
    assert "Not saved" in bad.text
    csv = console.get("/console/segments/export", params={**form, "format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == expected + 1  # a header and each member
    assert console.get("/console/segments/export", params={"feature": ["nope"], "op": ["=="],
                                                           "value": ["1"]}).status_code == 422  # fmt: skip


def test_data_health_reads_the_run_report_with_erasures():
    from serving.console.data import data_health

    report = {"ingest": {
        "order_lines": {"read": 12, "kept": 10, "quarantined": 2, "after_as_of": 0},
        "members": {"read": 5, "kept": 4, "quarantined": 0, "after_as_of": 0},
        "erased": {"members": 1, "rows": {"order_lines": 3, "members": 1}},
        "event_log": {"events": 0},
    }}  # fmt: skip
    assert data_health(report) == [("order_lines", 10, 2, 3), ("members", 4, 0, 1)]
    assert data_health(None) == []
