"""Request ids made when a caller sends none: well-formed, and distinct across processes too."""

from __future__ import annotations

import re
import subprocess
import sys

from common.logging import new_request_id


def made_in_a_new_process() -> str:
    code = "from common.logging import new_request_id; print(new_request_id())"
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_each_process_numbers_its_own_ids() -> None:
    # Services count from zero in every process: the random prefix keeps the first ids
    # of two processes (two gateway workers, a restarted scorer) apart.
    first, second = made_in_a_new_process(), made_in_a_new_process()
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second
