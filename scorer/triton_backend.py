"""Helpers shared by the Python-backend ``model.py`` files of the Triton model repository.

They run inside Triton's Python stub, which imports ``triton_python_backend_utils``; the
import is deferred to the call so this module also imports outside Triton.
"""

from __future__ import annotations

import json
from typing import Any


def rejected(message: str) -> Any:
    """An error response for one request, marked INVALID_ARG when the stub supports codes.

    Triton sends it to that request's client only; the other requests of the batch are served.

    Args:
        message: Human-readable error message returned to the client.

    Returns:
        A ``pb_utils.InferenceResponse`` carrying a ``pb_utils.TritonError``.
    """
    import triton_python_backend_utils as pb_utils

    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def parameter(args: dict[str, str], key: str, default: str) -> str:
    """A ``parameters`` value of the model's config.pbtxt.

    Args:
        args: The arguments Triton passes to ``initialize`` (``model_config`` is JSON).
        key: The parameter's key.
        default: Its value when the config does not set it.
    """
    params = json.loads(args["model_config"]).get("parameters", {})
    return str(params.get(key, {}).get("string_value", default))


def single_threaded_blas() -> None:
    """Limits numpy's BLAS to one thread in this stub process, for good.

    OpenBLAS otherwise starts a thread per core, and after every product the extra thread
    spins waiting for the next: in ``text_features`` (word alignment) that doubled the CPU per
    answer at the same wall time (``make bench-encoder``: 52 against 26.5 ms). Each Triton instance already runs
    one request at a time, so a second BLAS thread buys nothing on a box the whole stack shares.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
