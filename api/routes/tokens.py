"""/tokens: an admin creates, lists and revokes API tokens."""

from __future__ import annotations

from fastapi import APIRouter

from convlens.api.auth import Admin
from convlens.api.deps import BODY_ERRORS, ERRORS, NOT_FOUND, QueryText, error_doc
from convlens.api.schemas import TokenRequest
from convlens.api.tokens import NewToken, TokenList, TokenView, create_token, list_tokens, revoke_token

router = APIRouter(tags=["tokens"])


@router.get("/tokens", response_model=TokenList, responses=ERRORS)
def get_tokens(_: Admin) -> TokenList:
    return TokenList(tokens=list_tokens())


@router.post("/tokens", status_code=201, response_model=NewToken, responses={
    **BODY_ERRORS, 409: error_doc("that name is taken (names are never reused)")})
def post_token(req: TokenRequest, _: Admin) -> NewToken:
    """A new token; its secret is in this response only."""
    return create_token(req.name, req.scope, req.max_jobs)


@router.delete("/tokens/{name}", response_model=TokenView, responses=NOT_FOUND)
def delete_token(name: QueryText, _: Admin) -> TokenView:
    """Revokes a token: every request with it (and every session made from it) is refused from now on."""
    return revoke_token(name)
