"""Level 2: /live, /up, /health (to be completed by the health level)."""

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/live")
def live() -> dict[str, str]:
    """200 whenever the process can answer, whatever its dependencies."""
    return {"status": "OK"}
