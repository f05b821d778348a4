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


def _settings(home: Path | None):
    from features.settings import MemberwiseSettings

    return MemberwiseSettings(home=home) if home else MemberwiseSettings()


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


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="directory to write the shop into")],
    members: Annotated[int, typer.Option("--members", min=10, help="number of members")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
) -> None:
    """Generate a synthetic shop in the canonical format, with a truth/ folder."""
    from pipelines.synthetic import generate as gen

    _progress(f"generating {members:,} members (seed {seed}) into {out}")
    counts = gen(out, members=members, seed=seed, progress=_progress)
    for k, v in counts.items():
        _progress(f"  {k:<16} {v:>10,}")


@app.command()
def run(
    data: Annotated[Path, typer.Option("--data", help=f"shop directory ({DATA_FORMAT})")],
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD: use data up to this day")],
    home: HomeOpt = None,
    horizon_days: Annotated[int, typer.Option(help="churn horizon H in days")] = 90,
) -> None:
    """Validate, tag, load Feast, train and register every model, promote champions."""
    from pipelines.ingest import ContractError
    from pipelines.run import run_pipeline
    from training.config import TrainConfig

    day = _parse_date(as_of)
    try:
        run_pipeline(data, day, _settings(home), TrainConfig(horizon_days=horizon_days),
                     progress=_progress)  # fmt: skip
    except ContractError as exc:
        _contract_error(exc)
        raise typer.Exit(code=2) from exc


def _contract_error(exc: Exception) -> None:
    from rich.markup import escape

    console.print(f"[red]input does not meet the data format:[/red] {escape(str(exc))}")
    console.print(f"The input format is described in {DATA_FORMAT}.")


@app.command()
def score(
    out: Annotated[Path, typer.Option("--out", help="FILE.parquet to write")],
    home: HomeOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, max=100, help="products per member")] = 10,
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
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the API (OpenAPI docs at /docs)."""
    import os

    import uvicorn

    if home:
        os.environ["MEMBERWISE_HOME"] = str(home)
    uvicorn.run("serving.main:app", host=host, port=port, workers=workers, log_level="info")


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option("--data", help=f"shop directory ({DATA_FORMAT})")],
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD: hide everything after")],
    out: Annotated[Path, typer.Option("--out", help="directory for evaluation.json/.md/plots")],
    horizon_days: Annotated[int, typer.Option(help="days after as-of that are scored")] = 90,
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


class Dataset(StrEnum):
    online_retail = "online-retail"
    complete_journey = "complete-journey"


@app.command()
def convert(
    dataset: Annotated[Dataset, typer.Argument(help="which public dataset")],
    source_dir: Annotated[Path, typer.Argument(help="the dataset's folder")],
    out_dir: Annotated[Path, typer.Argument(help="where to write the canonical format")],
) -> None:
    """Convert UCI Online Retail or The Complete Journey into the canonical format."""
    from pipelines import convert as conv

    fn = {
        Dataset.online_retail: conv.convert_online_retail,
        Dataset.complete_journey: conv.convert_complete_journey,
    }[dataset]
    counts = fn(source_dir, out_dir)
    for k, v in counts.items():
        _progress(f"  {k:<28} {v:>10,}")


if __name__ == "__main__":
    app()
