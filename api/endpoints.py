"""``/v1/apps/{app}/endpoints`` (and ``/v1/endpoints``, the default
application's, for one release): where webhooks go.

An endpoint is a URL plus a signing secret. Jenga generates the secret
(``whsec_...``) and returns it once, in the answer to the create call; after
that it is never shown again (receivers store it). The URL must pass the SSRF
policy (:mod:`common.delivery.destinations`) on create and on update.

Every call needs a key that may read the application (writes: one that may
write it); see :mod:`api.tenancy`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import authenticate
from api.errors import ApiError
from api.pagination import ITERATOR, page, page_size, split
from api.tenancy import APP_ERRORS, WRITE_ERRORS, current_app, db_session
from common.access.audit import ENDPOINT_DELETED, record
from common.access.scopes import Principal
from common.delivery.destinations import DestinationError, resolve_destination
from common.delivery.models import App, Endpoint
from common.delivery.signing import generate_secret
from common.delivery.urls import normalise_url

# Mounted twice (api/app.py): under /v1/apps/{app}/endpoints and as /v1/endpoints.
router = APIRouter(tags=["endpoints"], responses=APP_ERRORS)


# Documented as a URI; checked by checked_url() (the SSRF policy), not by the model.
WebhookUrl = Annotated[
    str, Field(min_length=1, max_length=2048, json_schema_extra={"format": "uri"})
]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl = Field(description="http(s) URL that receives the webhooks.")
    description: str = Field(default="", max_length=1000, description="Free text for people.")


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = None
    description: str | None = Field(default=None, max_length=1000)


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str
    disabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            disabled=endpoint.disabled,
            disabled_reason=endpoint.disabled_reason,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The `whsec_...` signing secret. Shown only now: store it.")


class EndpointList(BaseModel):
    data: list[EndpointOut]
    iterator: str | None = Field(description="Pass as `?iterator=` for the next page.")
    done: bool = Field(description="True on the last page.")


def checked_url(request: Request, url: str) -> str:
    """``url`` as it will be sent (IDNA host, percent-encoded path: see
    :mod:`common.delivery.urls`) if webhooks may go there, else a 422 saying why."""
    try:
        url = normalise_url(url)
        resolve_destination(
            url, allow_private=request.app.state.settings.allow_private_destinations
        )
    except DestinationError as error:
        raise ApiError(422, "invalid_url", f"url refused: {error}") from None
    return url


def endpoint_or_404(
    session: Session, app: App, endpoint_id: str, *, lock: bool = False
) -> Endpoint:
    """The application's endpoint; another application's answers 404 like a missing one."""
    query = select(Endpoint).where(Endpoint.id == endpoint_id, Endpoint.app_id == app.id)
    endpoint = session.scalars(query.with_for_update() if lock else query).first()
    if endpoint is None:
        raise ApiError(404, "endpoint_not_found", f"no endpoint {endpoint_id!r}")
    return endpoint


@router.post("", status_code=201, response_model=EndpointCreated, responses=WRITE_ERRORS)
def create_endpoint(
    body: EndpointIn,
    request: Request,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
) -> EndpointCreated:
    """Create an endpoint; the answer carries its signing secret, once."""
    endpoint = Endpoint(
        app_id=app.id,
        url=checked_url(request, body.url),
        description=body.description,
        secret=generate_secret(),
    )
    session.add(endpoint)
    session.commit()
    session.refresh(endpoint)
    return EndpointCreated(**EndpointOut.of(endpoint).model_dump(), secret=endpoint.secret)


@router.get("", response_model=EndpointList)
def list_endpoints(
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    limit: int = page_size(500),
    iterator: str | None = ITERATOR,
) -> EndpointList:
    """Oldest first, a page at a time."""
    query = page(
        select(Endpoint).where(Endpoint.app_id == app.id), Endpoint, iterator, limit, False
    )
    rows, next_iterator, done = split(list(session.scalars(query)), limit)
    return EndpointList(data=[EndpointOut.of(e) for e in rows], iterator=next_iterator, done=done)


@router.get("/{endpoint_id}", response_model=EndpointOut)
def get_endpoint(
    endpoint_id: str, session: Session = Depends(db_session), app: App = Depends(current_app)
) -> EndpointOut:
    return EndpointOut.of(endpoint_or_404(session, app, endpoint_id))


@router.patch("/{endpoint_id}", response_model=EndpointOut, responses=WRITE_ERRORS)
def update_endpoint(
    endpoint_id: str,
    body: EndpointUpdate,
    request: Request,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
) -> EndpointOut:
    endpoint = endpoint_or_404(session, app, endpoint_id, lock=True)
    if body.url is not None:
        endpoint.url = checked_url(request, body.url)
    if body.description is not None:
        endpoint.description = body.description
    session.commit()
    session.refresh(endpoint)
    return EndpointOut.of(endpoint)


def _set_disabled(endpoint_id: str, session: Session, app: App, disabled: bool) -> EndpointOut:
    endpoint = endpoint_or_404(session, app, endpoint_id, lock=True)
    endpoint.disabled = disabled
    endpoint.disabled_reason = "disabled through the API" if disabled else None
    session.commit()
    session.refresh(endpoint)
    return EndpointOut.of(endpoint)


@router.post("/{endpoint_id}/disable", response_model=EndpointOut, responses=WRITE_ERRORS)
def disable_endpoint(
    endpoint_id: str, session: Session = Depends(db_session), app: App = Depends(current_app)
) -> EndpointOut:
    """Stop deliveries: new messages are refused (409), pending ones end `failed`."""
    return _set_disabled(endpoint_id, session, app, True)


@router.post("/{endpoint_id}/enable", response_model=EndpointOut, responses=WRITE_ERRORS)
def enable_endpoint(
    endpoint_id: str, session: Session = Depends(db_session), app: App = Depends(current_app)
) -> EndpointOut:
    return _set_disabled(endpoint_id, session, app, False)


@router.delete("/{endpoint_id}", status_code=204, responses=WRITE_ERRORS)
def delete_endpoint(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> Response:
    """Delete the endpoint with its messages and their attempts."""
    session.delete(endpoint_or_404(session, app, endpoint_id))
    record(session, principal.name, ENDPOINT_DELETED, endpoint_id, {"app": app.id})
    session.commit()
    return Response(status_code=204)
