"""/models: the model registry (every train job's model as NAME:VERSION, with its aliases)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from convlens.api.auth import Reader
from convlens.api.deps import ERRORS, NOT_FOUND, QueryText
from convlens.worker import registry
from convlens.worker.registry import ModelView

router = APIRouter(tags=["models"])


class ModelList(BaseModel):
    models: list[ModelView]


@router.get("/models", response_model=ModelList, responses=ERRORS)
def get_models(_: Reader) -> ModelList:
    """Every registered model, newest version of each name first."""
    return ModelList(models=registry.list_models())


@router.get("/models/{ref}", response_model=ModelView, responses=NOT_FOUND)
def get_model(ref: QueryText, _: Reader) -> ModelView:
    """One model by NAME, NAME:VERSION, NAME@ALIAS or its train job's id."""
    return registry.show(ref)
