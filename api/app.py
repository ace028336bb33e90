"""The libshare HTTP service (FastAPI). ``libshare serve`` runs it on 127.0.0.1.

This first version serves the consortium's public state from the index; the access
check, delivery, registration and audit routes build on the same pattern: a route takes
a validated body, calls one ``ledger`` service, and returns a response model.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlmodel import col, select

from api import problems
from api.deps import InstanceDep, Reader
from api.fastpath import LibshareApp
from api.routes import access, audit, federation, licences, resources
from ledger import __version__
from ledger.anchoring import run_anchoring
from ledger.instance import Instance, InstanceConfig
from ledger.store import CursorRow, MemberRow


class HealthPublic(BaseModel):
    version: str
    chain: str
    chain_block: int
    indexed_block: int | None
    deployed: bool


class MemberPublic(BaseModel):
    library_id: str
    tier: int
    country: str
    account: str
    admitted_block: int


router = APIRouter(prefix="/v1")


@router.get("/health", response_model=HealthPublic, tags=["service"])
def health(instance: InstanceDep) -> HealthPublic:
    """Chain head, how far the index has caught up, and whether a consortium is deployed."""
    with instance.db.session() as session:
        cursor = session.get(CursorRow, "events")
    return HealthPublic(
        version=__version__,
        chain=instance.chain.description,
        chain_block=instance.chain.block_number(),
        indexed_block=cursor.block if cursor else None,
        deployed=instance.deployed,
    )


@router.get("/members", response_model=list[MemberPublic], tags=["consortium"])
def members(instance: InstanceDep, caller: Reader) -> list[MemberPublic]:
    """The consortium's member libraries, as the chain admitted them."""
    instance.catch_up()
    with instance.db.session() as session:
        rows = session.exec(select(MemberRow).order_by(col(MemberRow.admitted_block))).all()
    return [MemberPublic.model_validate(row, from_attributes=True) for row in rows]


def create_app(config: InstanceConfig) -> FastAPI:
    """Build the app over the data dir described by ``config``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        instance = Instance(config)
        instance.catch_up()  # without the chain, checks still run from the index
        app.state.instance = instance
        stop = threading.Event()
        anchoring = threading.Thread(
            target=run_anchoring, args=(instance, stop), name="libshare-anchoring", daemon=True
        )
        anchoring.start()
        try:
            yield
        finally:
            stop.set()
            anchoring.join(timeout=30)
            instance.close()

    app = LibshareApp(
        title="libshare",
        version=__version__,
        summary="Rights and sharing ledger for library consortia",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(router)
    app.include_router(licences.router)
    app.include_router(access.router)
    app.include_router(resources.router)
    app.include_router(audit.router)
    app.include_router(federation.router)
    return app
