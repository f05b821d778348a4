"""The reference the decision API is measured against: a bare FastAPI endpoint that returns a
fixed JSON body of ``BENCH_BODY_BYTES`` bytes (the size of a decision), served with the same
uvicorn settings. ``python -m uvicorn --app-dir benchmarks bare_api:app``."""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Response

SIZE = int(os.environ.get("BENCH_BODY_BYTES", "2000"))
BODY = json.dumps({"member_id": "x", "pad": "x" * max(SIZE - 32, 0)}).encode()

app = FastAPI()


@app.get("/v1/members/{member_id}/recommendations")
def bare(member_id: str) -> Response:
    return Response(content=BODY, media_type="application/json")


@app.get("/readyz")
def ready() -> dict[str, str]:
    return {"status": "ok"}
