"""How fast each console page answers on the demo shop (3,000 members by default).

    python benchmarks/console_pages.py [--members 3000] [--repeat 5]

Generates the synthetic shop, computes its tags, fits small models in memory (the member
page shows the current decision), loads a member table derived from the tags into the
member store of a temporary home and requests every console page in process, signed in with
a marketing key. Prints the median and worst time of each page, the 1 s target and the ratio
to a reference measured in the same run (GET /healthz, the cheapest route of the app).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402

from features.member_store import MemberStore  # noqa: E402
from features.settings import MemberwiseSettings, get_settings  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.console.auth import ConsoleUser  # noqa: E402
from serving.deps import get_state  # noqa: E402
from serving.state import AppState  # noqa: E402
from tests.member_fixtures import members_from_tags  # noqa: E402
from tests.serving.world import AS_OF, FrameFeatures, shop_world  # noqa: E402

TARGET_S = 1.0
KEY = "bench-marketing"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        world = shop_world(Path(tmp) / "shop", members=args.members, seed=7)
        print(f"{len(world.tags):,} members: shop, tags and models in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        settings = MemberwiseSettings(home=Path(tmp) / "home")
        table = members_from_tags(world.tags)
        MemberStore(settings).load(table)
        app = create_app(settings)
        app.dependency_overrides[get_settings] = lambda: settings
        state = AppState(settings=settings, decider=world.decider(),
                         features=FrameFeatures(world.tags), as_of=AS_OF.isoformat())  # fmt: skip
        app.dependency_overrides[get_state] = lambda: state
        app.state.authenticate = {KEY: ConsoleUser("bench", "marketing")}.get
        client = TestClient(app)
        assert client.post("/console/signin", data={"key": KEY}, follow_redirects=False).status_code == 303  # fmt: skip

        member = str(table.sort_values("member_id")["member_id"].iloc[len(table) // 2])
        form = {"feature": ["recency_days", "tags"], "op": [">", "=="], "value": ["60", "dormant"]}  # fmt: skip
        pages = [
            ("GET /healthz (reference)", lambda: client.get("/healthz")),
            ("overview", lambda: client.get("/console/overview")),
            ("member search", lambda: client.get("/console/members", params={"q": member[:-1]})),
            ("member 360", lambda: client.get(f"/console/members/{member}")),
            ("segment builder", lambda: client.get("/console/segments")),
            (
                "segment preview (2 conditions)",
                lambda: client.post("/console/segments/preview", data=form),
            ),  # fmt: skip
            (
                "segment export (CSV)",
                lambda: client.get("/console/segments/export", params={**form, "format": "csv"}),
            ),  # fmt: skip
            ("tag rules", lambda: client.get("/console/rules")),
            ("models", lambda: client.get("/console/models")),
        ]
        ref = None
        worst_all = 0.0
        print(f"\n  {'page':34s} {'median ms':>10s} {'worst ms':>9s} {'/target':>8s} {'/reference':>10s}")  # fmt: skip
        for name, fn in pages:
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                r = fn()
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, (name, r.status_code, r.text[:300])
            med, worst = statistics.median(times), max(times)
            ref = ref or med
            if not name.endswith("(reference)"):
                worst_all = max(worst_all, worst)
            print(f"  {name:34s} {med * 1000:10.1f} {worst * 1000:9.1f} {med / TARGET_S:8.2f} {med / ref:10.1f}")  # fmt: skip
        verdict = "within" if worst_all < TARGET_S else "NOT within"
        print(f"\nslowest console page {worst_all * 1000:.0f} ms: {verdict} the {TARGET_S:.0f} s target")  # fmt: skip


if __name__ == "__main__":
    main()
