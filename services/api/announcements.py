"""Pub/sub across the whole fleet: one POST reaches every worker of every container.

Each worker keeps the last announcement it heard; asking several workers (or
containers) shows they all got it, through Redis rather than the cluster channel.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.common.errors import error_responses
from services.common.identity import current_identity

CHANNEL = "scalecube:announcements"


class Announcement(BaseModel):
    message: str = Field(min_length=1, max_length=1000)


class LastHeard:
    def __init__(self) -> None:
        self.message: Any = None
        self.received_at: float | None = None

    def hear(self, message: Any) -> None:
        self.message, self.received_at = message, time.time()


router = APIRouter(prefix="/announcements", tags=["shared state"])


@router.post("", status_code=202, responses=error_responses(503))
async def announce(body: Announcement, request: Request) -> dict[str, Any]:
    receivers = await request.app.state.broadcast.publish(
        {"message": body.message, "from": current_identity().served_by}
    )
    return {"published": True, "receivers": receivers}


@router.get("/last")
async def last(request: Request) -> dict[str, Any]:
    heard: LastHeard = request.app.state.last_heard
    return {"last": heard.message, "received_at": heard.received_at, "served_by": current_identity().served_by}
