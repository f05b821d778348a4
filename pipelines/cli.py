"""The `memberwise` command line: thin wrappers over the pipeline steps."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pipelines.progress import ConsoleProgress, make_console

DATA_FORMAT = "docs/data-format.md"

app = typer.Typer(
    name="memberwise",
    help="Personalisation for a membership programme: tags -> models -> one API call per member.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = make_console()
_progress = ConsoleProgress(console)

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="all state (Feast, MLflow, quarantine, reports); "
                 "default $MEMBERWISE_HOME or ~/.memberwise"),
]  # fmt: skip


def _settings(home: Path | None, **overrides):
    """The settings tree (environment, HOME/memberwise.toml, defaults); ``overrides`` are the
    command's options, keyword arguments being the highest source."""
    from features.settings import MemberwiseSettings

    kwargs = {k: v for k, v in overrides.items() if v}
    return MemberwiseSettings(home=home, **kwargs) if home else MemberwiseSettings(**kwargs)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"memberwise {version('memberwise')}")
        raise typer.Exit()


def _quiet_libraries() -> None:
    """Keep a run's output to what memberwise says: these library messages are about the
    libraries' own internals, not about the user's data or models."""
    import logging
    import warnings

    # a hint from MLflow's signature inference: our integer inputs are never missing
    warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer column")
    # the environment has no pip (uv builds it); the logged model's conda.yaml lists pip unpinned
    logging.getLogger("mlflow.utils.environment").addFilter(
        lambda record: "Failed to resolve installed pip version" not in record.getMessage()
    )


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version,
                     help="print the version and exit"),
    ] = False,
) -> None:  # fmt: skip
    """Personalisation for a membership programme: tags -> models -> one API call per member."""
    _quiet_libraries()


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"'{value}' is not a date in YYYY-MM-DD form") from exc


def _list_worlds(value: bool) -> None:
    if not value:
        return
    from pipelines.synthetic import WORLDS

    for name, w in WORLDS.items():
        typer.echo(f"{name:<24} {w.description}")
    raise typer.Exit()


def _channel_mix(value: str | None) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        parts = tuple(float(x) for x in value.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"'{value}' is not three numbers such as 0.6,0.15,0.25") from exc
    if len(parts) != 3:
        raise typer.BadParameter(f"'{value}' needs three shares: email,sms,push")
    return parts  # type: ignore[return-value]


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="directory to write the shop into")],
    members: Annotated[
        int | None,
        typer.Option(
            "--members", min=10, help="number of members (default: the world's own, else 2000)"
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
    world: Annotated[
        str, typer.Option("--world", help="a named preset world (--list-worlds shows them)")
    ] = "default",
    list_worlds: Annotated[
        bool,
        typer.Option(
            "--list-worlds",
            is_eager=True,
            callback=_list_worlds,
            help="list the preset worlds and exit",
        ),
    ] = False,
    repeat_rate: Annotated[
        float | None,
        typer.Option(
            "--repeat-rate",
            min=0.0,
            max=1.0,
            help="share of a member's order lines that are their re-bought staples",
        ),
    ] = None,
    coupon_effect: Annotated[
        float | None,
        typer.Option(
            "--coupon-effect",
            min=0.0,
            help="scale of every coupon's effect (0 = coupons change no one's purchases)",
        ),
    ] = None,
    coupon_heterogeneity: Annotated[
        float | None,
        typer.Option(
            "--coupon-heterogeneity",
            min=0.0,
            max=2.0,
            help="0 = every member responds alike, 1 = base, 2 = polarised",
        ),
    ] = None,
    products: Annotated[
        int | None, typer.Option("--products", min=1, help="catalogue size at 2,000 members")
    ] = None,
    noise: Annotated[
        float | None,
        typer.Option("--noise", min=0.0, max=1.0, help="0 = base, 1 = habits carry no signal"),
    ] = None,
    channel_mix: Annotated[
        str | None,
        typer.Option(
            "--channel-mix", help="email,sms,push shares of the messages sent, e.g. 0.2,0.6,0.2"
        ),
    ] = None,
    respond_to: Annotated[
        Path | None,
        typer.Option(
            "--respond-to",
            help="a campaign's send list (sends.parquet, or its folder): append the planted "
            "members' answers to the shop already at --out instead of generating one",
        ),
    ] = None,
) -> None:
    """Generate a synthetic shop in the canonical format, with a truth/ folder."""
    if respond_to is not None:
        _respond(out, respond_to, seed)
        return
    from dataclasses import replace

    from pipelines.synthetic import generate as gen
    from pipelines.synthetic import get_world

    try:
        w = get_world(world)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--world") from exc
    overrides = {
        "repeat_rate": repeat_rate, "coupon_effect": coupon_effect,
        "coupon_heterogeneity": coupon_heterogeneity, "products": products, "noise": noise,
        "channel_mix": _channel_mix(channel_mix),
    }  # fmt: skip
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        w = replace(w, **overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    n = w.size(members)
    knobs = ", ".join(f"{k}={v}" for k, v in overrides.items())
    _progress(f"generating {n:,} members of world {w.name}{f' ({knobs})' if knobs else ''} "
              f"(seed {seed}) into {out}")  # fmt: skip
    counts = gen(out, members=n, seed=seed, world=w, progress=_progress)
    for k, v in counts.items():
        _progress(f"  {k:<16} {v:>10,}")


@app.command()
def run(
    data: Annotated[Path, typer.Option("--data", help=f"shop directory ({DATA_FORMAT})")],
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD: use data up to this day")],
    home: HomeOpt = None,
    horizon_days: Annotated[
        int | None,
        typer.Option(min=1, help="churn horizon H in days [default: training.horizon_days]"),
    ] = None,
    tags: Annotated[
        Path | None,
        typer.Option(
            "--tags",
            help="tag rules YAML to tag with; copied into the home as the "
            "rules in force [default: the home's, else the programme's]",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="when another run is writing into the home, wait for it "
            "(up to runs.lock_timeout_seconds) instead of refusing",
        ),
    ] = False,
) -> None:
    """Validate, tag, load Feast, train and register every model, promote champions.

    The run commits as a whole: if it fails, the home keeps serving the previous run."""
    from rich.markup import escape

    from features.rules import RulesInvalid
    from pipelines.home import RunInProgress
    from pipelines.ingest import ContractError
    from pipelines.run import run_pipeline

    day = _parse_date(as_of)
    training = {"horizon_days": horizon_days} if horizon_days else None
    if tags is not None and not tags.is_file():
        console.print(f"[red]{escape(str(tags))}: no such file[/red]")
        raise typer.Exit(code=2)
    try:
        run_pipeline(data, day, _settings(home, training=training), progress=_progress,
                     tags_file=tags, wait=wait)  # fmt: skip
    except ContractError as exc:
        _contract_error(exc)
        raise typer.Exit(code=2) from exc
    except RunInProgress as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from exc
    except RulesInvalid as exc:
        console.print(f"[red]tag rules refused:[/red] {escape(str(exc))}")
        raise typer.Exit(code=2) from exc


def _contract_error(exc: Exception) -> None:
    from rich.markup import escape

    console.print(f"[red]input does not meet the data format:[/red] {escape(str(exc))}")
    console.print(f"The input format is described in {DATA_FORMAT}.")


@app.command()
def score(
    out: Annotated[Path, typer.Option("--out", help="FILE.parquet to write")],
    home: HomeOpt = None,
    n: Annotated[
        int | None,
        typer.Option("--n", min=1, help="products per member [default: serving.default_products]"),
    ] = None,
) -> None:
    """Batch decisions for every member (churn risk, coupon, send time, products, tags)."""
    from pipelines.score import write_scores

    try:
        df = write_scores(_settings(home), out, n_products=n, progress=_progress)
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from exc
    _progress(f"wrote {len(df):,} members to {out}")


@app.command()
def serve(
    home: HomeOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address [default: serving.host]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: serving.port]")] = None,
    workers: Annotated[
        int | None, typer.Option(help="uvicorn worker processes [default: serving.workers]")
    ] = None,
) -> None:
    """Serve the API (OpenAPI docs at /docs)."""
    import os

    import uvicorn

    if home:
        os.environ["MEMBERWISE_HOME"] = str(home)
    api = _settings(home).serving
    uvicorn.run("serving.main:app", host=host or api.host, port=port or api.port,
                workers=workers or api.workers, log_level="info",
                log_config=None, access_log=False)  # fmt: skip  # serving logs JSON lines


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option("--data", help=f"shop directory ({DATA_FORMAT})")],
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD: hide everything after")],
    out: Annotated[Path, typer.Option("--out", help="directory for evaluation.json/.md/plots")],
    horizon_days: Annotated[
        int | None,
        typer.Option(
            min=1, help="days after as-of that are scored [default: training.horizon_days]"
        ),
    ] = None,
) -> None:
    """Backtest every model against baselines and peers on what happened after --as-of."""
    from pipelines.evaluate import evaluate as run_evaluate
    from pipelines.ingest import ContractError

    try:
        run_evaluate(data, _parse_date(as_of), out, horizon_days=horizon_days,
                     progress=_progress)  # fmt: skip
    except ContractError as exc:
        _contract_error(exc)
        raise typer.Exit(code=2) from exc


@app.command("config")
def show_config(
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Print every setting's effective value and where it came from (default, file
    HOME/memberwise.toml, environment MEMBERWISE_SECTION__NAME)."""
    import json

    from features.settings import explain

    try:
        rows = explain(home=home) if home else explain()
    except ValueError as exc:  # a bad value in the environment or the file
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        value = json.dumps(r["value"]) if not isinstance(r["value"], str) else r["value"]
        typer.echo(f"{r['name']:<{width}}  {r['source']:<11}  {value}")


class Dataset(StrEnum):
    online_retail = "online-retail"
    complete_journey = "complete-journey"
    hillstrom = "hillstrom"


@app.command()
def convert(
    dataset: Annotated[Dataset, typer.Argument(help="which public dataset")],
    source_dir: Annotated[Path, typer.Argument(help="the dataset's folder")],
    out_dir: Annotated[Path, typer.Argument(help="where to write the canonical format")],
    cost_per_send: Annotated[
        float | None,
        typer.Option(
            "--cost-per-send", min=0.0, help="hillstrom: cost of one e-mail (default 0.10)"
        ),
    ] = None,
    margin_rate: Annotated[
        float | None,
        typer.Option(
            "--margin-rate",
            min=0.0,
            max=1.0,
            help="hillstrom: margin rate of what was bought (default 0.30)",
        ),
    ] = None,
) -> None:
    """Convert UCI Online Retail, The Complete Journey or Hillstrom's e-mail experiment into
    the canonical format."""
    from pipelines import convert as conv

    if dataset is not Dataset.hillstrom and (cost_per_send is not None or margin_rate is not None):
        raise typer.BadParameter("--cost-per-send and --margin-rate apply to hillstrom only")
    if dataset is Dataset.hillstrom:
        from dataclasses import replace

        cfg = conv.HillstromConfig()
        cfg = replace(
            cfg,
            **{
                k: v
                for k, v in (("cost_per_send", cost_per_send), ("margin_rate", margin_rate))
                if v is not None
            },
        )
        counts = conv.convert_hillstrom(source_dir, out_dir, cfg)
        _progress(
            f"  campaign on {cfg.campaign_date}: backtest it as of "
            f"{conv.hillstrom_as_of(cfg)} with --horizon-days {cfg.outcome_days}"
        )
    else:
        fn = {
            Dataset.online_retail: conv.convert_online_retail,
            Dataset.complete_journey: conv.convert_complete_journey,
        }[dataset]
        counts = fn(source_dir, out_dir)
    for k, v in counts.items():
        _progress(f"  {k:<28} {v:>10,}")


@app.command()
def report(
    home: HomeOpt = None,
    segment: Annotated[
        str | None,
        typer.Option("--segment", help="a tag, or COLUMN=VALUE (level=gold) [default: every tag]"),
    ] = None,
) -> None:
    """KPIs by segment, tag prevalence and new-member retention cohorts (JSON + PNG, MLflow)."""
    from rich.markup import escape

    from pipelines.report import ALL, write_report

    try:
        path, rep = write_report(_settings(home), segment)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(code=2) from exc
    console.print(f"{rep['members']:,} members as of {rep['as_of']}, tag version {rep['tag_version']}")  # fmt: skip
    console.print("tag prevalence:")
    for p in rep["prevalence"]:
        console.print(f"  {escape(p['tag']):<22} {p['members']:>8,}  {p['share']:6.1%}")
    fmt = lambda v: "n/a" if v is None else f"{v:,.3f}"  # noqa: E731
    for name, k in rep["segments"].items():
        if segment and name == ALL:
            continue
        console.print(f"{escape(name)}: " + ", ".join(f"{key} {fmt(v)}" for key, v in k.items()))
    console.print(f"report: {path}")


tags_app = typer.Typer(help="Tag rules as data (docs/tag-rules.md).", no_args_is_help=True)
app.add_typer(tags_app, name="tags")


@tags_app.command("validate")
def tags_validate(
    file: Annotated[Path, typer.Argument(help="a tag rules YAML file")],
) -> None:
    """Check a tag rules file: every problem with its line; exit 2 when there is any."""
    from rich.markup import escape

    from features.rules import validate_rules

    if not file.is_file():
        console.print(f"[red]{escape(str(file))}: no such file[/red]")
        raise typer.Exit(code=2)
    try:
        rules, problems = validate_rules(file)
    except UnicodeDecodeError as exc:
        console.print(f"[red]{escape(str(file))}: not UTF-8 text ({exc.reason})[/red]")
        raise typer.Exit(code=2) from exc
    except OSError as exc:
        console.print(f"[red]{escape(str(file))}: cannot be read ({exc.strerror})[/red]")
        raise typer.Exit(code=2) from exc
    if problems or rules is None:
        for p in problems:
            console.print(f"{escape(str(file))}:{p.line}: [red]{escape(p.message)}[/red]")
        console.print(f"{len(problems)} problem(s); the language is described in docs/tag-rules.md")
        raise typer.Exit(code=2)
    grouped = sum(len(g.names) for g in rules.groups)
    console.print(
        f"{escape(str(file))}: valid, version {rules.version}: {len(rules.tags)} tags, "
        f"{len(rules.groups)} exclusive groups ({grouped} tags in them)"
    )
    for g in rules.groups:
        console.print(f"  {g.name}: {', '.join(g.names)}")


keys_app = typer.Typer(help="API keys: who may call the API, and for what.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


class KeyScope(StrEnum):
    storefront = "storefront"
    marketing = "marketing"
    admin = "admin"


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        KeyScope,
        typer.Option(
            help="storefront: per-member decisions and "
            "products; marketing: segments, profiles, campaigns, exports, the console; "
            "admin: everything"
        ),
    ],  # fmt: skip
    shop: Annotated[
        str | None,
        typer.Option(
            help="the shop (a name in the shops setting) the key reads; default: this home"
        ),
    ] = None,  # fmt: skip
    label: Annotated[str, typer.Option(help="who or what the key is for")] = "",
    home: HomeOpt = None,
) -> None:
    """Make a key and print its token once (only its hash is kept)."""
    from serving.logs import audit
    from serving.security import KeyStore

    settings = _settings(home)
    if shop is not None and shop not in settings.shops:
        known = ", ".join(sorted(settings.shops)) or "none configured"
        raise typer.BadParameter(f"no shop {shop!r} (shops: {known})", param_hint="--shop")
    key, token = KeyStore.of(settings).create(str(scope), shop=shop, label=label)
    audit("key.create", None, settings, subject=key.key_id, scope=key.scope, shop=shop,
          label=label)  # fmt: skip
    console.print(f"key {key.key_id} ({key.scope}{f', shop {shop}' if shop else ''}); "
                  "the token is shown only now:", highlight=False)  # fmt: skip
    typer.echo(token)


@keys_app.command("list")
def keys_list(home: HomeOpt = None) -> None:
    """Every key: id, scope, shop, label, made, revoked (never the token)."""
    from serving.security import KeyStore

    keys = KeyStore.of(_settings(home)).list()
    if not keys:
        console.print("no keys yet: `memberwise keys create --scope ...`")
    for k in keys:
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        typer.echo(f"{k.key_id}  {k.scope:<10}  {k.shop or '-':<10}  {k.created_at}  "
                   f"{state:<30}  {k.label}")  # fmt: skip


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id, as `keys list` shows it")],
    home: HomeOpt = None,
) -> None:
    """Revoke a key: every request with it is refused from now on."""
    from serving.logs import audit
    from serving.security import KeyStore

    settings = _settings(home)
    try:
        key = KeyStore.of(settings).revoke(key_id)
    except KeyError:
        console.print(f"[red]no key {key_id!r}: `memberwise keys list` shows them[/red]")
        raise typer.Exit(code=2) from None
    audit("key.revoke", None, settings, subject=key.key_id, scope=key.scope, shop=key.shop)
    console.print(f"key {key.key_id} revoked ({key.revoked_at})")


def _respond(shop: Path, plan: Path, seed: int) -> None:
    import pandas as pd

    from pipelines.respond import respond

    path = plan / "sends.parquet" if plan.is_dir() else plan
    if not path.is_file():
        console.print(f"[red]{path}: no send list there (a campaign's sends.parquet)[/red]")
        raise typer.Exit(code=2)
    if not (shop / "truth" / "members.parquet").is_file():
        console.print(f"[red]{shop}: not a synthetic shop (no truth/); generate one first[/red]")
        raise typer.Exit(code=2)
    try:
        counts = respond(shop, pd.read_parquet(path), seed=seed)
    except (ValueError, KeyError) as exc:
        console.print(f"[red]cannot answer the plan:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    for k, v in counts.items():
        _progress(f"  {k:<16} {v:>10,} appended")


campaign_app = typer.Typer(
    help="Campaigns planned under a budget with a randomized holdout (docs/campaigns.md).",
    no_args_is_help=True,
)
app.add_typer(campaign_app, name="campaign")


@campaign_app.command("plan")
def campaign_plan(
    file: Annotated[Path, typer.Argument(help="a campaign file (YAML, docs/campaigns.md)")],
    home: HomeOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="random seed of the holdout draw")] = 0,
) -> None:
    """Plan a campaign: choose members and offers within the budget, hold out members at
    random, write the send list (CSV and Parquet) with a decision id per row."""
    from rich.markup import escape

    from features.campaign_store import plan_dir
    from features.campaign_targets import NoMembers
    from features.rules import RuleError
    from serving.campaign_plans import load_spec, plan_campaign

    if not file.is_file():
        console.print(f"[red]{escape(str(file))}: no such file[/red]")
        raise typer.Exit(code=2)
    settings = _settings(home)
    try:
        spec = load_spec(file)
        _, info = plan_campaign(settings, spec, seed=seed)
    except (ValueError, LookupError, RuleError, NoMembers) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(code=2) from exc
    d = plan_dir(settings, spec.name)
    _progress(f"planned {spec.name}: {info['members']:,} members, {info['sent']:,} sent, "
              f"expected cost {info['expected_cost']:,.2f} of {info['budget']:,.2f}, "
              f"holdout {info['by_arm']['holdout']:,}")  # fmt: skip
    for action, n in info["by_action"].items():
        _progress(f"  {action:<16} {n:>10,}")
    _progress(f"send list: {d / 'sends.csv'} and {d / 'sends.parquet'}")


@campaign_app.command("report")
def campaign_report(
    name: Annotated[str, typer.Argument(help="the campaign's name")],
    data: Annotated[Path, typer.Option("--data", help="the shop data after the campaign")],
    home: HomeOpt = None,
) -> None:
    """Measure a campaign on the data after it: treated against holdout with confidence
    intervals, and other policies' value from the logged propensities."""
    from training.campaign_report import write_report

    try:
        report = write_report(_settings(home), name, data)
    except (LookupError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from exc
    level = f"{report['confidence']:.0%}"
    for offer, r in report["offers"].items():
        c = r["converted"]
        if c["lift"] is None:
            _progress(f"  {offer:<12} too few members to measure")
            continue
        _progress(f"  {offer:<12} conversion lift {c['lift']:+.3f} ({level} interval "
                  f"{c['low']:+.3f}..{c['high']:+.3f}), treated {r['n_treated']:,}, "
                  f"holdout {r['n_control']:,}")  # fmt: skip
    for pol, v in report["policies"].items():
        m = v["margin"]
        if m["identified"]:
            _progress(f"  policy {pol:<18} margin/member DR {m['dr']:.2f} +- {m['dr_se']:.2f}")


if __name__ == "__main__":
    app()


@app.command()
def erase(
    member_ids: Annotated[list[str], typer.Argument(help="member id(s) to forget")],
    home: HomeOpt = None,
) -> None:
    """Forget members: gone from the online store now, and from every later run's tags,
    training data, scores, segments and exports (a salted hash is kept, not the id)."""
    from pipelines.erasure import erase as erase_members

    ids = [m.strip() for m in member_ids]
    bad = [m for m in ids if not m or len(m) > 256]
    if bad:
        console.print(f"[red]not a member id: {bad!r} (1 to 256 characters)[/red]")
        raise typer.Exit(code=2)
    out = erase_members(_settings(home), ids)
    _progress(
        f"erased {out['erased']:,} member(s): {out['online']:,} removed from the online store, "
        f"{out['snapshot_rows']:,} tag row(s) scrubbed; the next run leaves them out"
    )
