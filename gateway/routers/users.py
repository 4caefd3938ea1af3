"""Staff accounts, for admins: ``/api/v1/users``."""

from __future__ import annotations

from fastapi import APIRouter, status

from gateway.admin_schemas import CreateUserBody, User, role_value, user_from_proto
from gateway.deps import AdminClientDep, AdminDep
from gateway.problems import problem_responses
from xlinterview.v1 import admin_pb2

router = APIRouter(prefix="/api/v1/users", tags=["users"], responses=problem_responses(400, 401, 403, 422, 429, 503))


@router.get("", response_model=list[User], summary="List staff accounts")
async def list_users(principal: AdminDep, admin: AdminClientDep) -> list[User]:
    """Every staff account, oldest first."""
    response = await admin.identity("ListUsers", admin_pb2.ListUsersRequest())
    return [user_from_proto(u) for u in response.users]


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=User, responses=problem_responses(409), summary="Create a staff account"
)
async def create_user(body: CreateUserBody, principal: AdminDep, admin: AdminClientDep) -> User:
    """A new admin, interviewer or analyst; the password is stored as an argon2id hash."""
    request = admin_pb2.CreateUserRequest(
        email=body.email, password=body.password, display_name=body.display_name, role=role_value(body.role)
    )
    return user_from_proto(await admin.identity("CreateUser", request))
