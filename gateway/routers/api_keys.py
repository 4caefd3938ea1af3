"""API keys of internal callers, for admins: ``/api/v1/api-keys``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from gateway.admin_schemas import ApiKey, CreateApiKeyBody, IssuedApiKey, api_key_from_proto, role_value
from gateway.deps import AdminClientDep, AdminDep
from gateway.problems import problem_responses
from xlinterview.v1 import admin_pb2

router = APIRouter(
    prefix="/api/v1/api-keys", tags=["api-keys"], responses=problem_responses(400, 401, 403, 422, 429, 503)
)

KeyId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


def _issued(issued: admin_pb2.IssuedApiKey) -> IssuedApiKey:
    return IssuedApiKey(key=api_key_from_proto(issued.key), secret=issued.secret)


@router.get("", response_model=list[ApiKey], summary="List API keys")
async def list_keys(principal: AdminDep, admin: AdminClientDep) -> list[ApiKey]:
    """Every key, revoked ones included; secrets are never shown again."""
    response = await admin.identity("ListApiKeys", admin_pb2.ListApiKeysRequest())
    return [api_key_from_proto(k) for k in response.keys]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IssuedApiKey, summary="Create an API key")
async def create_key(body: CreateApiKeyBody, principal: AdminDep, admin: AdminClientDep) -> IssuedApiKey:
    """A key acting with ``role`` on behalf of the calling admin; the secret is shown once."""
    request = admin_pb2.CreateApiKeyRequest(name=body.name, role=role_value(body.role), owner_user_id=principal.user_id)
    return _issued(await admin.identity("CreateApiKey", request))


@router.post(
    "/{key_id}/rotate", response_model=IssuedApiKey, responses=problem_responses(404, 409), summary="Rotate an API key"
)
async def rotate_key(key_id: KeyId, principal: AdminDep, admin: AdminClientDep) -> IssuedApiKey:
    """A new secret for the key; the old one stops working at once."""
    return _issued(await admin.identity("RotateApiKey", admin_pb2.ApiKeyRequest(key_id=key_id)))


@router.post("/{key_id}/revoke", response_model=ApiKey, responses=problem_responses(404), summary="Revoke an API key")
async def revoke_key(key_id: KeyId, principal: AdminDep, admin: AdminClientDep) -> ApiKey:
    """Revokes the key for good; revoking twice returns the same key."""
    return api_key_from_proto(await admin.identity("RevokeApiKey", admin_pb2.ApiKeyRequest(key_id=key_id)))
