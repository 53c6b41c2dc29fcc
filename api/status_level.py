"""What each section of the status page is judged into: a :class:`Level` (a name, green,
amber or red, and one line that says why), and how an age reads in that line. Shared by
:mod:`api.status` and the sections it draws from other modules (:mod:`api.status_delivery`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AMBER", "GREEN", "RED", "Level", "age_text"]

GREEN, AMBER, RED = "green", "amber", "red"


@dataclass(frozen=True)
class Level:
    name: str
    color: str  # green | amber | red
    summary: str


def age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
