"""The floor for ``bench.bench_accept``: a bare FastAPI endpoint that writes what an
accepted message writes (the message row and one delivery, committed) with psycopg, and
nothing else: no auth, no validation beyond the body's JSON, no publish.

    BARE_DATABASE_URL=postgresql://… uvicorn bench.accept_bare_app:app --port N
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from psycopg_pool import AsyncConnectionPool

INSERT = """
WITH message AS (
    INSERT INTO webhook_messages (id, app_id, event_type, payload, body, request_hash,
                                  created_at)
    VALUES (%(id)s, %(app_id)s, %(event_type)s, CAST(%(payload)s AS jsonb), %(body)s,
            %(hash)s, now())
    RETURNING id, created_at
)
INSERT INTO webhook_deliveries (id, message_id, endpoint_id, status, created_at,
                                next_attempt_at, dispatched_at)
SELECT %(delivery_id)s, id, %(endpoint_id)s, 'pending', created_at, created_at, created_at
FROM message
"""


@asynccontextmanager
async def lifespan(app: FastAPI):
    pool = AsyncConnectionPool(
        os.environ["BARE_DATABASE_URL"], min_size=16, max_size=16, open=False
    )
    await pool.open()
    app.state.pool = pool
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/bare", status_code=202)
async def bare(request: Request) -> dict:
    body = json.loads(await request.body())
    message_id = f"msg_{uuid.uuid4().hex}"
    payload = json.dumps(body["payload"])
    async with request.app.state.pool.connection() as conn:
        await conn.execute(
            INSERT,
            {
                "id": message_id,
                "app_id": os.environ["BARE_APP_ID"],
                "event_type": body["event_type"],
                "payload": payload,
                "body": payload,
                "hash": hashlib.sha256(payload.encode()).hexdigest(),
                "delivery_id": f"dlv_{uuid.uuid4().hex}",
                "endpoint_id": os.environ["BARE_ENDPOINT_ID"],
            },
        )
    return {"id": message_id}
