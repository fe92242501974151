"""Checkpoints and exported weights: written atomically, read with ``weights_only=True``, refused
with a clear error when they belong to another configuration, hand, dataset or package version.

A checkpoint (``torch.save`` of plain containers and tensors) holds the model's and optimiser's
state, the scheduler's, the random generators', the step and epoch, and a ``meta`` dict
(configuration, training settings, package version, git commit, dataset fingerprint). Exported
weights hold the model's state alone (fp16 optional) and its ``meta``; the JSON model card beside
them describes the model for people.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from miho import files

__all__ = ["export_weights", "git_commit", "load_checkpoint", "load_weights", "run_card", "save_checkpoint",
           "write_card"]  # fmt: skip


def git_commit() -> str:
    """The repository's HEAD commit (``"unknown"`` outside a git checkout), "+dirty" when changed."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def save_checkpoint(path: str | Path, state: dict) -> None:
    """``torch.save(state, path)`` atomically (a crash leaves the previous file)."""
    with files.atomic_write(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def _read(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every unreadable file is reported the same way
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or not a torch file: {type(e).__name__}: "
                         f"{e})") from e  # fmt: skip
    if not isinstance(state, dict) or "meta" not in state:
        raise ValueError(f"{path} is not a MIHO checkpoint (no 'meta' entry)")
    return state


def _differences(have, want, prefix: str = "") -> list[str]:
    """Where two metas differ, nested dicts followed down to the entry: "a.b: file x, expected y"."""
    if isinstance(want, dict) and isinstance(have, dict):
        return [d for k in sorted(set(want) | set(have), key=str)
                for d in _differences(have.get(k), want.get(k), f"{prefix}{k}.")]  # fmt: skip
    return [] if have == want else [f"{prefix[:-1] or 'value'}: file {have!r}, expected {want!r}"]


def _compare(path, meta: dict, expect: dict) -> None:
    for key, want in expect.items():
        have = meta.get(key)
        if have != want:
            detail = ", ".join(_differences(have, want, "" if isinstance(want, dict) else f"{key}."))
            raise ValueError(f"{path} was written for another {key} ({detail})")


def load_checkpoint(path: str | Path, expect: dict | None = None) -> dict:
    """Read a checkpoint and check that its ``meta`` matches ``expect`` (each key equal).

    Raises:
        ValueError: a missing, corrupt or foreign file, or a ``meta`` entry that differs (named).
    """
    state = _read(path)
    _compare(path, state["meta"], expect or {})
    return state


def export_weights(model: torch.nn.Module, path: str | Path, meta: dict, half: bool = True) -> None:
    """Write ``model``'s state (floating tensors in fp16 when ``half``) and ``meta``, atomically."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
          for k, v in model.state_dict().items()}  # fmt: skip
    save_checkpoint(path, {"model": sd, "meta": meta})


def load_weights(model: torch.nn.Module, path: str | Path, expect: dict | None = None) -> dict:
    """Load weights written by :func:`export_weights` (or a checkpoint) into ``model``; returns their meta.

    Raises:
        ValueError: as :func:`load_checkpoint`, or tensors that do not fit the model.
    """
    state = load_checkpoint(path, expect)
    own = model.state_dict()
    sd = state["model"]
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}, "
                         f"other shapes {wrong[:3]}")  # fmt: skip
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
    return state["meta"]


def file_origin(path: str | Path) -> dict:
    """``{"path": the path as given, "sha256": hex digest}`` of a weights file: what a task records
    of the weights it starts from or reads, so that a resumed run checks they are the same."""
    import hashlib

    return {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


def init_weights(model: torch.nn.Module, path: str | Path) -> dict:
    """Start ``model`` from the weights at ``path`` (:func:`load_weights`) for fine-tuning; returns
    their :func:`file_origin`."""
    load_weights(model, path)
    return file_origin(path)


def run_card(state: dict, weights: str | Path, checkpoint: str, note: str = "") -> dict:
    """The model-card entries every exported run has, from its training checkpoint ``state``:
    configuration, weights file name, data, settings, epochs, steps, wall time, machine, commit,
    package version, the checkpoint's name, the per-epoch history and ``note``."""
    meta = state["meta"]
    return {
        "config": meta["task"]["config"], "weights": Path(weights).name, "data": meta["task"]["data"],
        "val_data": meta["task"].get("val_data"), "task": meta["task"], "settings": meta["settings"],
        "epochs": state["epoch"], "steps": state["step"], "wall_s": round(state["wall_s"], 1),
        "machine": meta["machine"], "commit": meta["commit"], "version": meta["version"], "checkpoint": checkpoint,
        "history": state["history"], "note": note,
    }  # fmt: skip


def write_card(weights: str | Path, card: dict) -> None:
    """Write the model card beside ``weights`` (same stem, ``.json``), atomically."""
    import json

    with files.atomic_write(Path(weights).with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=1))
