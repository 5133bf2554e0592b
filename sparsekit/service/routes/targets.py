"""``/v1/targets``: the backends this service builds for and the environment facts their engines
are tied to (auth required; probed once at start)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from sparsekit.service.routes.deps import current_caller
from sparsekit.service.state import ServiceState, get_state

router = APIRouter()


@router.get("/v1/targets", dependencies=[Depends(current_caller)])
def list_targets(state: ServiceState = Depends(get_state)):
    """Every backend, available or not (with the reason), without the server's paths."""
    return {"targets": state.scrub.value(state.targets)}
