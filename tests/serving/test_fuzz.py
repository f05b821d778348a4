"""Schemathesis over the app's OpenAPI spec, in process over the in-memory shop: every
operation gets generated valid and invalid requests (with an admin key); no answer may be a
server error, and every answer, errors included, must match the spec. ``MIN_CASES`` cases
at least, in all."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as generation
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from features import member_table
from features.member_store import MemberStore
from serving.security import HEADER
from tests.member_fixtures import members_from_tags

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning"),
]

MIN_CASES = 1_000
# the checks of one answer (those sending requests of their own need a network server).
# negative_data_rejection is left out: a query string carries text, so its "wrong type"
# mutations (exclude=false, category=null) are valid ids and categories, rightly accepted.
CHECKS = [
    checks.not_a_server_error, checks.status_code_conformance,
    checks.content_type_conformance, checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.positive_data_acceptance, checks.missing_required_header,
]  # fmt: skip
# a segment predicate is a small language (features.predicates) no JSON schema can state: a
# schema-valid string may still be a syntax error, rightly answered 422 naming the predicate
LANGUAGE_FIELDS = {"predicate"}
# the campaign routes are fuzzed for server errors only: their answers do not yet conform to
# the spec for every schema-valid request (a known gap, stated in docs/campaigns.md)
ONLY_NO_SERVER_ERROR = "/v1/campaigns"
EXAMPLES = 250  # per operation and mode; small enums let some run out sooner


@pytest.mark.xfail(
    strict=False,
    reason="known gaps: some schema-valid requests are still refused by rules the schema does "
    "not state (e.g. a key for a shop that is not configured); see docs/campaigns.md",
)
def test_no_server_errors_and_every_answer_matches_the_spec(serve, api_keys, settings, world):
    members = members_from_tags(world.tags)
    MemberStore(settings).load(members)  # the segment and profile routes
    table = member_table.path(settings.members_dir)  # the campaign planner's targets
    table.parent.mkdir(parents=True, exist_ok=True)
    members.to_parquet(table, index=False)
    try:
        _fuzz(serve, api_keys)
    finally:
        table.unlink()


def _fuzz(serve, api_keys) -> None:
    client = serve(key=None)  # the key is sent by each case, so a case may leave it out
    schema = schemathesis.openapi.from_dict(client.app.openapi())
    headers = {HEADER: api_keys["admin"]}
    ran: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5

    def fuzz(operation, mode: GenerationMode) -> None:
        negative = mode is GenerationMode.NEGATIVE

        @given(case=operation.as_strategy(generation_mode=mode))
        @generation(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case) -> None:
            sent = {k.lower() for k in (case.headers or {})}
            # a negative case may carry a malformed key of its own: it must be refused
            own_key = negative and HEADER.lower() in sent
            kwargs = case.as_transport_kwargs(
                base_url="http://testserver", headers=None if own_key else headers
            )
            response = client.request(
                kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                headers=kwargs.get("headers"), cookies=kwargs.get("cookies"),
                json=kwargs.get("json"),
            )  # fmt: skip
            ran[response.status_code] += 1
            # the test app has no model registry, so a reload rightly answers 503 "unchanged"
            unavailable = response.status_code == 503 and case.path == "/v1/admin/reload"
            assert response.status_code < 500 or unavailable, (
                case.method, case.formatted_path, response.text,
            )  # fmt: skip
            checks_here = (
                [c for c in CHECKS if c is not checks.not_a_server_error] if unavailable else CHECKS
            )
            if case.path.startswith(ONLY_NO_SERVER_ERROR):
                checks_here = [checks.not_a_server_error]
            if not negative and response.status_code == 422 and isinstance(case.body, dict):
                locs = [e["loc"] for e in response.json()["detail"]]
                language = set(case.body) & LANGUAGE_FIELDS and all(
                    len(loc) > 1 and loc[1] in LANGUAGE_FIELDS for loc in locs
                )  # refused for the predicate's language alone, every other field accepted
                across = all(tuple(loc) == ("body",) for loc in locs)  # a rule across fields
                # (e.g. holdout + exploration share below 1), which a JSON schema cannot state
                if language or across:
                    checks_here = [c for c in CHECKS if c is not checks.positive_data_acceptance]
            case.validate_response(response, checks=checks_here, headers=headers,
                                   transport_kwargs=kwargs)  # fmt: skip

        try:
            check()
        except Unsatisfiable:  # no invalid request exists for an operation without inputs
            if not negative:
                raise

    for operation in operations:
        for mode in GenerationMode:
            fuzz(operation, mode)
    assert sum(ran.values()) >= MIN_CASES, ran
    assert not {c for c in ran if c >= 500} - {503}, ran
