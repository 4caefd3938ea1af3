"""The question bank, read-only for staff: ``/api/v1/bank``."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.admin_schemas import BankItem
from gateway.deps import AdminClientDep, StaffDep
from gateway.problems import problem_responses
from xlinterview.v1 import admin_pb2

router = APIRouter(prefix="/api/v1/bank", tags=["bank"], responses=problem_responses(401, 403, 429, 503))


@router.get("/items", response_model=list[BankItem], summary="List questions")
async def list_items(principal: StaffDep, admin: AdminClientDep) -> list[BankItem]:
    """The current version of every question, without reference solutions."""
    response = await admin.interviews("ListBankItems", admin_pb2.ListBankItemsRequest())
    return [
        BankItem(item_id=i.item_id, version=i.version, kind=i.kind, skill_area=i.skill_area, prompt=i.prompt)
        for i in response.items
    ]
