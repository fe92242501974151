"""Hand models behind one MANO-like interface (paper §3).

``load_hand()`` gives the default open Anny right hand; ``load_hand("mano", path)`` reads a
user-supplied MANO pickle. See :class:`miho.hand.model.HandModel` for the interface.
"""

from miho.hand.anny_asset import load_anny_hand
from miho.hand.model import (
    FINGER_JOINTS,
    FINGERS,
    JOINTS21_ORDER,
    MANO_PARENTS,
    NUM_JOINTS,
    HandModel,
    HandOutput,
    fingertip_vertices,
)
from miho.hand.pca import PosePCA

__all__ = [
    "FINGERS", "FINGER_JOINTS", "JOINTS21_ORDER", "MANO_PARENTS", "NUM_JOINTS",
    "HandModel", "HandOutput", "PosePCA", "fingertip_vertices", "load_anny_hand", "load_hand",
]  # fmt: skip


def load_hand(name: str = "anny", path=None, device="cpu", dtype=None) -> HandModel:
    """Load a hand model by name.

    Args:
        name: ``"anny"`` (default, the committed open asset) or ``"mano"`` (reads
            ``MANO_RIGHT.pkl`` from ``path`` or ``$MIHO_MANO_DIR``; never shipped).
        path: for MANO, the pickle file or the folder holding it.
        device, dtype: where the model's tensors live (default float32).
    """
    import torch

    dtype = dtype or torch.float32
    if name == "anny":
        return load_anny_hand(device=device, dtype=dtype)
    if name == "mano":
        from miho.hand.mano import load_mano

        return load_mano(path, device=device, dtype=dtype)
    raise ValueError(f"unknown hand model {name!r}; choose 'anny' or 'mano'")
