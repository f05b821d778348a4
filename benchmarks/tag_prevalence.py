"""Share of members each rule tag of a rules file holds for, on a shop in the canonical
format, as of a date: the rules that need no model score, on the tag frame of that date
(``memberwise report`` shows the same figures for every tag, score rules included, after
a run).

    python benchmarks/tag_prevalence.py DATA_DIR YYYY-MM-DD [RULES.yaml]
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from features.rules import DEFAULT_RULES, load_rules, tag_names, without_scores
from features.settings import MemberwiseSettings
from features.tags import compute_tags
from pipelines.ingest import load_shop


def main() -> None:
    data, as_of = Path(sys.argv[1]), date.fromisoformat(sys.argv[2])
    rules = load_rules(Path(sys.argv[3]) if len(sys.argv) > 3 else DEFAULT_RULES)
    s = MemberwiseSettings()
    shop = load_shop(data, as_of, s.ingest)
    tags = compute_tags(shop.tables, as_of, s.tags, rules)
    n = len(tags)
    base = without_scores(rules)
    print(f"{data} as of {as_of}: {n:,} members, rules version {rules.version}")
    print("| tag | members | share |")
    print("|---|---:|---:|")
    for name in tag_names(base):
        k = int(tags[name].sum())
        print(f"| {name} | {k:,} | {k / max(n, 1):.1%} |")
    for g in base.groups:
        shares = tags[g.name].value_counts(normalize=True)
        print(f"| {g.name} | | " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()) + " |")


if __name__ == "__main__":
    main()
