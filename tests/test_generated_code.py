"""The one rule for generated protobuf code: built from proto/ into xlinterview/, never committed."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO / "proto"


def test_no_generated_code_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    offenders = [path for path in tracked if path.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))]
    offenders += [path for path in tracked if path.startswith("xlinterview/")]
    assert offenders == [], f"generated code must not be committed: {offenders}"


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    assert protos, "no .proto files found"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTO_DIR), f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", *protos],
        check=True,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    stale = [
        str(rel)
        for rel in fresh
        if not (REPO / rel).exists() or not filecmp.cmp(tmp_path / rel, REPO / rel, shallow=False)
    ]
    assert stale == [], f"xlinterview/ is out of date with proto/ (run `make proto`): {stale}"


def test_every_service_is_in_the_contracts() -> None:
    from xlinterview.v1 import orchestrator_pb2, scorer_pb2

    assert set(scorer_pb2.DESCRIPTOR.services_by_name) == {"Scorer"}
    assert set(orchestrator_pb2.DESCRIPTOR.services_by_name) == {"Orchestrator"}
    assert scorer_pb2.DESCRIPTOR.package == "xlinterview.v1"
