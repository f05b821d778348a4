"""The console's pages: server-rendered Jinja2 templates, htmx for the parts that update in
place (segment counts, rule validation). Every page needs a marketing or admin key, given
once on the sign-in page and kept in an HttpOnly, SameSite=Strict cookie; each request checks
it again, so a revoked key is out at once. The console reads the home the app serves and
never writes into it."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from features.member_store import MemberStore, QueryTimeout, StoreEmpty
from features.predicates import PredicateError
from features.rules import RuleError
from serving.console import data
from serving.console.auth import COOKIE, ConsoleUser, SignInRequired, authenticate, console_user
from serving.deps import StateDep, get_member_store
from serving.routes.profile import next_order_date
from serving.state import AppState

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)
UserDep = Annotated[ConsoleUser, Depends(console_user)]
MAX_CONDITIONS = 12


def _num(v: Any, unit: str = "number") -> str:
    """A number for people: thousands separators, shares as percentages, '—' for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if unit == "share":
        return f"{v:.1%}"
    if unit == "count":
        return f"{v:,.0f}"
    if unit == "money":
        return f"{v:,.2f}"
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


templates.env.filters["num"] = _num
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def mount(app: FastAPI) -> None:
    """Add the console to ``app``: its pages, its stylesheet and htmx (installed from PyPI
    with the package ``django-js-lib-htmx`` and served from here: no CDN, no network)."""
    htmx = resources.files("js_lib_htmx") / "static" / "htmx"
    app.mount("/console/static/htmx", StaticFiles(directory=str(htmx)), name="console-htmx")
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)

    @app.exception_handler(SignInRequired)
    async def _to_sign_in(request: Request, exc: SignInRequired) -> Response:
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": "/console/signin"})
        return RedirectResponse("/console/signin", status_code=303)


def _page(
    request: Request, name: str, user: ConsoleUser | None, status_code: int = 200, **ctx: Any
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"user": user, **ctx},
                                      status_code=status_code)  # fmt: skip


def _members_or_none(state: AppState) -> pd.DataFrame | None:
    return data.members(state.settings)


def _store(state: AppState) -> MemberStore | None:
    """The member store when a run has loaded it (pages then read it), else None (pages read
    the latest tag snapshot)."""
    store = get_member_store(state.settings)
    try:
        store.kinds()
    except StoreEmpty:
        return None
    return store


# --------------------------------------------------------------------------- sign in
@router.get("", response_class=HTMLResponse)
def home() -> Response:
    return RedirectResponse("/console/overview", status_code=303)


@router.get("/signin", response_class=HTMLResponse)
def sign_in_page(request: Request) -> HTMLResponse:
    return _page(request, "signin.html", None, error=None)


@router.post("/signin", response_class=HTMLResponse)
def sign_in(request: Request, key: Annotated[str, Form(max_length=200)]) -> Response:
    user = authenticate(request, key.strip())
    if user is None:
        return _page(request, "signin.html", None, status_code=401,
                     error="That key is not valid or has been revoked.")  # fmt: skip
    if user.scope not in ("marketing", "admin"):
        return _page(request, "signin.html", None, status_code=403,
                     error=f"A {user.scope} key cannot open the console: it needs a "
                     "marketing or admin key.")  # fmt: skip
    response = RedirectResponse("/console/overview", status_code=303)
    response.set_cookie(COOKIE, key.strip(), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/console")  # fmt: skip
    return response


@router.post("/signout")
def sign_out() -> Response:
    response = RedirectResponse("/console/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


# --------------------------------------------------------------------------- overview
@router.get("/overview", response_class=HTMLResponse)
def overview(request: Request, user: UserDep, state: StateDep) -> HTMLResponse:
    report = data.run_report(state.settings)
    ctx: dict[str, Any] = {"report": report, "health": data.data_health(report), "total": None}
    store = _store(state)
    if store is not None:
        summary = store.summary()
        n = max(summary.count, 1)
        ctx |= {"total": summary.count, "kpis": data.store_kpis(summary),
                "breakdowns": data.store_breakdowns(summary),
                "prevalence": [(t, c, c / n) for t, c in store.tag_prevalence()]}  # fmt: skip
    elif (frame := _members_or_none(state)) is not None:
        ctx |= {"total": len(frame), "kpis": data.kpis(frame), "breakdowns": data.breakdowns(frame),
                "prevalence": data.tag_prevalence(frame)}  # fmt: skip
    return _page(request, "overview.html", user, **ctx)


# --------------------------------------------------------------------------- members
@router.get("/members", response_class=HTMLResponse)
def member_search(request: Request, user: UserDep, state: StateDep, q: str = "") -> HTMLResponse:
    store = _store(state)
    hits: list[dict[str, Any]] | None = None
    if store is not None:
        hits = store.search(q[:100], limit=50)
    elif (frame := _members_or_none(state)) is not None:
        hits = data.search(frame, q[:100]).to_dict("records")
    return _page(request, "members.html", user, q=q[:100], hits=hits)


@router.get("/members/{member_id}", response_class=HTMLResponse)
def member_page(request: Request, member_id: str, user: UserDep, state: StateDep) -> HTMLResponse:
    store = _store(state)
    row = None
    if store is not None:
        row = store.member(member_id)
        if row is not None:
            row["expected_next_order"] = next_order_date(row)
    elif (frame := _members_or_none(state)) is not None:
        match = frame.loc[frame["member_id"].astype(str) == member_id]
        row = match.iloc[0].to_dict() if len(match) else None
    if row is None:
        return _page(request, "member.html", user, status_code=404, member_id=member_id,
                     row=None, decision=None, reasons=[], grid=None, days=DAYS)  # fmt: skip
    decision = None
    if state.ready:
        assert state.decider is not None
        decision = state.decider.decide(member_id, state.member_features(member_id),
                                        datetime.now(UTC), n_products=5)  # fmt: skip
    return _page(request, "member.html", user, member_id=member_id, row=row,
                 decision=decision, reasons=data.tag_reasons(row, state.settings),
                 grid=data.engagement_grid(row.get("engagement_how")), days=DAYS,
                 level_history=data.level_history(state.settings, member_id))  # fmt: skip


# --------------------------------------------------------------------------- segments
def _conditions(feature: list[str], op: list[str], value: list[str]) -> list[data.Condition]:
    """The builder's complete rows (a row without a feature or a value is still being edited)."""
    rows = [data.Condition(f, o, v) for f, o, v in zip(feature, op, value, strict=False)
            if f and v.strip()]  # fmt: skip
    if len(rows) > MAX_CONDITIONS:
        raise RuleError(f"at most {MAX_CONDITIONS} conditions")
    return rows


@router.get("/segments", response_class=HTMLResponse)
def segment_builder(request: Request, user: UserDep, state: StateDep) -> HTMLResponse:
    store = _store(state)
    if store is not None:
        features = data.store_features(store.kinds())
        saved = store.segments()
        return _page(request, "segments.html", user, ready=True, features=features,
                     ops=data.OPS, result=_store_result(store, []), saved=saved)  # fmt: skip
    frame = _members_or_none(state)
    features = data.numeric_features(frame) if frame is not None else []
    return _page(request, "segments.html", user, ready=frame is not None, features=features,
                 ops=data.OPS, result=_segment_result(frame, []), saved=[])  # fmt: skip


def _segment_result(frame: pd.DataFrame | None, rows: list[data.Condition]) -> dict[str, Any]:
    if frame is None:
        return {"error": "no members yet: run `memberwise run` first"}
    try:
        chosen = data.select(frame, data.predicate(rows, frame))
    except RuleError as exc:
        return {"error": str(exc)}
    return {"error": None, "count": len(chosen), "of": len(frame),
            "kpis": data.kpis(chosen), "breakdowns": data.breakdowns(chosen),
            "sample": chosen["member_id"].astype(str).head(20).tolist()}  # fmt: skip


def _store_result(store: MemberStore, rows: list[data.Condition]) -> dict[str, Any]:
    try:
        tree = data.store_predicate(rows, store.kinds())
        expr = store.parse(tree)
        summary = store.summary(expr)
        sample = store.page(expr, limit=20).members
        total = store.count()
    except (RuleError, PredicateError, QueryTimeout) as exc:
        return {"error": str(exc)}
    query = urlencode([(k, v) for r in rows for k, v in (("feature", r.feature), ("op", r.op), ("value", r.value))])  # fmt: skip
    return {"error": None, "count": summary.count, "of": total,
            "kpis": data.store_kpis(summary), "breakdowns": data.store_breakdowns(summary),
            "sample": [str(m["member_id"]) for m in sample], "export": query,
            "predicate": json.dumps(tree) if tree else "every member"}  # fmt: skip


FormList = Annotated[list[str], Form()]


@router.post("/segments/preview", response_class=HTMLResponse)
def segment_preview(
    request: Request,
    user: UserDep,
    state: StateDep,
    feature: FormList = [],  # noqa: B006  (FastAPI form lists)
    op: FormList = [],  # noqa: B006
    value: FormList = [],  # noqa: B006
) -> HTMLResponse:
    try:
        rows = _conditions(feature, op, value)
    except RuleError as exc:
        return _page(request, "_segment_result.html", user, result={"error": str(exc)})
    store = _store(state)
    result = _store_result(store, rows) if store is not None else _segment_result(_members_or_none(state), rows)  # fmt: skip
    return _page(request, "_segment_result.html", user, result=result)


@router.post("/segments/save", response_class=HTMLResponse)
def segment_save(
    request: Request,
    user: UserDep,
    state: StateDep,
    name: Annotated[str, Form(max_length=80)] = "",
    feature: FormList = [],  # noqa: B006
    op: FormList = [],  # noqa: B006
    value: FormList = [],  # noqa: B006
) -> HTMLResponse:
    store = _store(state)
    if store is None:
        return _page(request, "_saved.html", user, error="no members yet: run `memberwise run` first")  # fmt: skip
    try:
        tree = data.store_predicate(_conditions(feature, op, value), store.kinds())
        saved = store.save_segment(name.strip(), tree or {}, f"saved in the console ({user.scope})")  # fmt: skip
    except (RuleError, PredicateError, ValueError) as exc:
        return _page(request, "_saved.html", user, error=str(exc))
    return _page(request, "_saved.html", user, error=None, saved=saved)


@router.get("/segments/export")
def segment_export(
    user: UserDep,
    state: StateDep,
    format: Literal["csv", "parquet"] = "csv",
    feature: Annotated[list[str], Query()] = [],  # noqa: B006
    op: Annotated[list[str], Query()] = [],  # noqa: B006
    value: Annotated[list[str], Query()] = [],  # noqa: B006
) -> Response:
    store = _store(state)
    if store is None:
        return Response("no members yet: run `memberwise run` first", status_code=409, media_type="text/plain")  # fmt: skip
    try:
        expr = store.parse(data.store_predicate(_conditions(feature, op, value), store.kinds()))
    except (RuleError, PredicateError) as exc:
        return Response(str(exc), status_code=422, media_type="text/plain")
    media = "text/csv" if format == "csv" else "application/vnd.apache.parquet"
    return StreamingResponse(store.export(expr, format), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="segment.{format}"'})  # fmt: skip


# --------------------------------------------------------------------------- rules
@router.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request, user: UserDep, state: StateDep) -> HTMLResponse:
    view = data.live_rules(state.settings, _members_or_none(state))
    return _page(request, "rules.html", user, view=view, problems=view.problems, checked=False)


@router.post("/rules/validate", response_class=HTMLResponse)
def rules_validate(
    request: Request, user: UserDep, state: StateDep,
    text: Annotated[str, Form(max_length=200_000)],
) -> HTMLResponse:  # fmt: skip
    problems = data.check_text(text, _members_or_none(state))
    return _page(request, "_rules_problems.html", user, problems=problems, checked=True)


# --------------------------------------------------------------------------- models
@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, user: UserDep, state: StateDep) -> HTMLResponse:
    report = data.run_report(state.settings)
    champions = state.champions
    plots = data.plots(state.settings)
    names = [p.relative_to(state.settings.mlflow_dir / "artifacts").as_posix() for p in plots]
    return _page(request, "models.html", user, report=report, champions=champions, plots=names)


@router.get("/plots/{path:path}")
def plot(path: str, user: UserDep, state: StateDep) -> Response:
    root = (state.settings.mlflow_dir / "artifacts").resolve()
    target = (root / path).resolve()
    if target.suffix != ".png" or root not in target.parents or not target.is_file():
        return Response("no such plot", status_code=404, media_type="text/plain")
    return FileResponse(target, media_type="image/png")


# --------------------------------------------------------------------------- campaigns
MAX_OFFERS = 4


def _campaign_spec(form: dict[str, Any]) -> Any:
    """The plan form -> a CampaignSpec (raises ValueError with the reasons)."""
    from pydantic import ValidationError

    from models.campaign import CampaignSpec

    offers = [{"coupon_id": c.strip(), "cost": k.strip()}
              for c, k in zip(form["coupon"], form["cost"], strict=False) if c.strip()]  # fmt: skip
    raw = {"name": form["name"].strip() or "draft", "predicate": form["predicate"].strip() or None,
           "offers": offers[:MAX_OFFERS], "budget": form["budget"] or 0,
           "channels": form["channel"] or ["email"], "start": form["start"],
           "holdout_share": form["holdout"], "frequency_cap": form["cap"] or None}  # fmt: skip
    try:
        return CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        msgs = [f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()]
        raise ValueError("; ".join(msgs)) from None


def _campaign_plan(state: AppState, form: dict[str, Any], save: bool) -> dict[str, Any]:
    from features import campaign_targets
    from serving import campaign_plans

    frame = _members_or_none(state)
    if frame is None:
        return {"error": "no members yet: run `memberwise run` first"}
    try:
        spec = _campaign_spec(form)
        if "lifecycle" not in frame and "lifecycle_stage" in frame:
            frame = frame.assign(lifecycle=frame["lifecycle_stage"])
        targets = campaign_targets.select(frame, spec.predicate)
        sends, info = campaign_plans.plan_campaign(state.settings, spec, seed=0,
                                                   targets=targets, save=save)  # fmt: skip
    except (ValueError, RuleError) as exc:
        return {"error": str(exc)}
    return {"error": None, "info": info, "spec": spec,
            "sample": sends.loc[sends["channel"].notna()].head(10).to_dict("records")}  # fmt: skip


CampaignForm = dict[str, Any]


def _form(
    name: Annotated[str, Form(max_length=64)] = "",
    predicate: Annotated[str, Form(max_length=2000)] = "",
    coupon: Annotated[list[str], Form()] = [],  # noqa: B006  (FastAPI form lists)
    cost: Annotated[list[str], Form()] = [],  # noqa: B006
    budget: Annotated[str, Form(max_length=20)] = "0",
    holdout: Annotated[str, Form(max_length=10)] = "0.1",
    channel: Annotated[list[str], Form()] = [],  # noqa: B006
    cap: Annotated[str, Form(max_length=4)] = "",
    start: Annotated[str, Form(max_length=10)] = "",
) -> CampaignForm:
    return {"name": name, "predicate": predicate, "coupon": coupon, "cost": cost,
            "budget": budget, "holdout": holdout, "channel": channel, "cap": cap,
            "start": start or datetime.now(UTC).date().isoformat()}  # fmt: skip


FormDep = Annotated[CampaignForm, Depends(_form)]


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request, user: UserDep, state: StateDep) -> HTMLResponse:
    from features.campaign_store import list_campaigns

    frame = _members_or_none(state)
    return _page(request, "campaigns.html", user, frame=frame,
                 campaigns=list_campaigns(state.settings), today=datetime.now(UTC).date(),
                 defaults=state.settings.campaigns, result=None)  # fmt: skip


@router.post("/campaigns/preview", response_class=HTMLResponse)
def campaign_preview(request: Request, user: UserDep, state: StateDep, form: FormDep) -> HTMLResponse:  # fmt: skip
    return _page(request, "_campaign_preview.html", user, result=_campaign_plan(state, form, False))


@router.post("/campaigns", response_class=HTMLResponse)
def campaign_save(request: Request, user: UserDep, state: StateDep, form: FormDep) -> Response:
    result = _campaign_plan(state, form, True)
    if result["error"]:
        return _page(request, "_campaign_preview.html", user, status_code=422, result=result)
    target = f"/console/campaigns/{result['spec'].name}"
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.get("/campaigns/{name}", response_class=HTMLResponse)
def campaign_page(request: Request, name: str, user: UserDep, state: StateDep) -> HTMLResponse:
    from features.campaign_store import load_plan, load_report

    try:
        spec, sends, info = load_plan(state.settings, name)
    except LookupError:
        return _page(request, "campaign.html", user, status_code=404, campaign=name, info=None,
                     spec=None, report=None, sample=[])  # fmt: skip
    sample = sends.loc[sends["channel"].notna()].head(20).to_dict("records")
    return _page(request, "campaign.html", user, campaign=name, info=info, spec=spec,
                 report=load_report(state.settings, name), sample=sample)  # fmt: skip
