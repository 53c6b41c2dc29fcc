"""Routes of this level (to be written)."""

from fastapi import APIRouter

router = APIRouter()
