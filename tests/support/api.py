"""What the in-process API tests share: the bootstrap admin token they configure,
its header, and the calls that make keys."""

from __future__ import annotations

__all__ = ["ADMIN", "TOKEN", "bearer", "new_key"]

TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_key(client, *scopes: str) -> str:
    """A new API key with ``scopes``, made with the admin token."""
    response = client.post("/v1/keys", json={"scopes": list(scopes)}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["key"]
