"""Which model an artefact was made from.

A model's identity is a hash of its weights and of the config that rebuilds them: a model
retrained with another seed or more epochs is another model even with the same classes,
so a calibrator, OOD detector or ONNX graph made from one is never applied to the other.
Bundles saved before identities existed get theirs from the same contents. No Kedro.
"""

from __future__ import annotations

import hashlib
import json

import torch

from anomaly_lens.ml.models.bundle import ModelBundle

# The command that makes each kind of artefact again, for the newest model.
REMADE_BY = {
    "calibrator": "kedro run --pipelines=calibration",
    "OOD detector": "kedro run --pipelines=ood",
    "drift reference": "kedro run --pipelines=ood",
    "ONNX graph": "kedro run --pipelines=export",
    "one-class detector": "kedro run --pipelines=anomaly",
}


class StaleArtefactError(ValueError):
    """A required artefact was made from another model than the one at hand."""


def model_identity(bundle: ModelBundle) -> str:
    """16 hex digits of the SHA-256 of the model's config and weights (names, dtypes,
    shapes and bytes, in name order)."""
    digest = hashlib.sha256(json.dumps(bundle.config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(bundle.state_dict.items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def mismatch(kind: str, made_from: str | None, identity: str) -> str | None:
    """Why an artefact of ``kind`` (a key of ``REMADE_BY``) made from ``made_from`` does not
    belong to the model ``identity`` (None where it does), with the command that makes a
    matching one."""
    if made_from == identity:
        return None
    if made_from is None:
        origin = "made before artefacts recorded their model"
    else:
        origin = f"made from model {made_from}"
    return f"the {kind} was {origin}, not from this model {identity}: run `{REMADE_BY[kind]}`"


def require_made_from(kind: str, made_from: str | None, identity: str) -> None:
    """Raise ``StaleArtefactError`` naming both models and the command to run."""
    reason = mismatch(kind, made_from, identity)
    if reason is not None:
        raise StaleArtefactError(reason[0].upper() + reason[1:])
