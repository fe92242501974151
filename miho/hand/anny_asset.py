"""The default hand: the open Anny right hand, converted once into a compact asset.

The asset ``miho/assets/anny_hand_right.npz`` is derived from the ``anny`` package (code
Apache-2.0, MakeHuman-based data CC0; see ``miho/assets/NOTICE``) by
``data_scripts/build_anny_hand_asset.py``, which calls :func:`extract_anny_hand`. Loading it
needs only numpy and torch.

Conversion (all of it checked by ``tests/test_anny_asset.py`` against ``anny`` itself):

* Anny's 21 bones map to MANO's 16 joints: ``finger2-*`` index, ``finger3-*`` middle,
  ``finger5-*`` little, ``finger4-*`` ring, ``finger1-*`` thumb; ``root``, ``wrist`` and the four
  ``metacarpal*`` bones are fixed to the palm, so their skinning weights merge into joint 0.
* Joints are the bone heads (the thumb's first joint is the head of ``finger1-1``, its CMC).
* Coordinates are Anny's root-bone frame at the default phenotype: the wrist at the origin,
  ``+y`` from the wrist towards the fingers, metres.
* Shape: five of Anny's local changes, each a coefficient in [-1, 1] whose positive part drives
  the increase target and whose negative part the decrease target (:data:`SHAPE_LOCAL_CHANGES`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from miho.hand.model import HandModel, fingertip_vertices

ASSET_PATH = Path(__file__).resolve().parent.parent / "assets" / "anny_hand_right.npz"

#: miho shape name -> Anny local-change label (without its ``-incr`` suffix).
SHAPE_LOCAL_CHANGES = {
    "hand_scale": "r-hand-scale",  # overall hand size (+1: about +30 %)
    "finger_length": "r-hand-fingers-length",  # finger length relative to the palm
    "finger_thickness": "r-hand-fingers-diameter",  # finger girth
    "finger_spacing": "r-hand-fingers-distance",  # lateral spacing of the fingers
    "wrist_girth": "measure-wrist-circ",  # wrist circumference
}

#: Anny bone label (right hand, without ``.R``) -> MANO joint id.
ANNY_BONE_TO_JOINT = {
    "root": 0, "wrist": 0, "metacarpal1": 0, "metacarpal2": 0, "metacarpal3": 0, "metacarpal4": 0,
    "finger2-1": 1, "finger2-2": 2, "finger2-3": 3,
    "finger3-1": 4, "finger3-2": 5, "finger3-3": 6,
    "finger5-1": 7, "finger5-2": 8, "finger5-3": 9,
    "finger4-1": 10, "finger4-2": 11, "finger4-3": 12,
    "finger1-1": 13, "finger1-2": 14, "finger1-3": 15,
}  # fmt: skip


def make_anny_right_hand():
    """Anny's right hand as ``anny`` builds it (needs the ``anny`` package; slow the first time)."""
    try:
        import anny
    except ImportError as e:  # pragma: no cover - exercised only without anny
        raise ImportError("Rebuilding the hand asset needs the 'anny' package: pip install anny") from e
    return anny.Anny(
        rig="anny-hand.R",
        topology="hand.R",
        local_changes=[f"{label}-incr" for label in SHAPE_LOCAL_CHANGES.values()],
        pose_parameterization="local-bone",
    )


def anny_root_frame(model) -> np.ndarray:
    """(4, 4) inverse of Anny's rest root pose at the default shape: body frame -> asset frame."""
    out = model(None)
    return torch.linalg.inv(out["rest_bone_poses"][0, 0]).numpy()


def extract_anny_hand(model) -> dict[str, np.ndarray]:
    """Arrays of the asset from an ``anny.Anny`` right-hand model (see the module docstring)."""
    labels = [b.removesuffix(".R") for b in model.bone_labels]
    if sorted(labels) != sorted(ANNY_BONE_TO_JOINT):
        raise ValueError(f"unexpected Anny hand rig bones: {labels}")
    bone_joint = np.array([ANNY_BONE_TO_JOINT[b] for b in labels])
    head_bone = {j: labels.index(b) for b, j in ANNY_BONE_TO_JOINT.items() if "finger" in b}
    head_bone[0] = labels.index("wrist")
    head_index = np.array([head_bone[j] for j in range(16)])

    frame = torch.as_tensor(anny_root_frame(model))
    rot, off = frame[:3, :3], frame[:3, 3]

    def rest(changes: dict[str, float]):
        out = model(None, local_changes_kwargs=changes)
        v = out["rest_vertices"][0] @ rot.T + off
        j = out["rest_bone_heads"][0][head_index] @ rot.T + off
        return v.numpy(), j.numpy()

    template, joints = rest({})
    dirs = {"pos": [], "neg": []}
    for label in SHAPE_LOCAL_CHANGES.values():
        for sign, key in ((1.0, "pos"), (-1.0, "neg")):
            v, j = rest({f"{label}-incr": sign})
            dirs[key].append((v - template, j - joints))

    V = template.shape[0]
    idx = model.vertex_bone_indices.long().numpy()  # (V, K) may repeat a bone (zero padding)
    weights = np.zeros((V, 16))
    np.add.at(
        weights, (np.arange(V)[:, None].repeat(idx.shape[1], 1), bone_joint[idx]), model.vertex_bone_weights.numpy()
    )
    faces = model.get_triangular_faces().numpy() if hasattr(model, "get_triangular_faces") else model.faces.numpy()
    return dict(
        template=template,
        faces=faces.astype(np.int32),
        weights=weights,
        joints=joints,
        shape_dirs=np.stack([d[0] for d in dirs["pos"]]),
        shape_dirs_neg=np.stack([d[0] for d in dirs["neg"]]),
        joint_shape_dirs=np.stack([d[1] for d in dirs["pos"]]),
        joint_shape_dirs_neg=np.stack([d[1] for d in dirs["neg"]]),
        shape_names=np.array(list(SHAPE_LOCAL_CHANGES)),
    )


def hand_from_arrays(arrays: dict, name: str) -> HandModel:
    """A :class:`HandModel` from the asset's arrays (float32, CPU)."""
    t = {k: torch.tensor(np.asarray(arrays[k], dtype=np.float32)) for k in (  # copies: the model owns its buffers
        "template", "weights", "joints", "shape_dirs", "shape_dirs_neg",
        "joint_shape_dirs", "joint_shape_dirs_neg")}  # fmt: skip
    faces = torch.tensor(np.asarray(arrays["faces"], dtype=np.int64))
    weights = t["weights"] / t["weights"].sum(1, keepdim=True)
    tips = fingertip_vertices(t["template"], weights, t["joints"])
    return HandModel(
        name=name,
        faces=faces,
        tip_vertices=tips,
        shape_names=[str(s) for s in arrays["shape_names"]],
        side="right",
        **{**t, "weights": weights},
    )


@functools.lru_cache(maxsize=1)
def _load_arrays(path: str) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"hand asset {path} is missing; rebuild it with "
            "'python data_scripts/build_anny_hand_asset.py' (needs the anny package)"
        )
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_anny_hand(device="cpu", dtype=torch.float32) -> HandModel:
    """The default Anny right hand (1609 vertices) from the committed asset."""
    return hand_from_arrays(_load_arrays(str(ASSET_PATH)), name="anny-right").to(device, dtype)
