"""A PCA pose space for the 15 finger rotations (MANO's optional low-dimensional pose).

The basis is fitted from example poses (the synthetic grasps, or MANO's own
``hands_components``); :meth:`PosePCA.full_pose` turns (wrist, coefficients) into the (B, 16, 3)
pose that :meth:`miho.hand.HandModel.forward` takes.
"""

from __future__ import annotations

import torch

from miho.checks import check_tensor
from miho.hand.model import NUM_JOINTS

_D = 3 * (NUM_JOINTS - 1)


class PosePCA:
    """Linear pose space ``finger_pose = mean + coeffs @ components``.

    components: (K, 45) orthonormal rows (axis-angle of joints 1..15, flattened).
    mean: (45,).
    """

    def __init__(self, components: torch.Tensor, mean: torch.Tensor) -> None:
        check_tensor("components", components, (None, _D))
        check_tensor("mean", mean, (_D,))
        self.components, self.mean = components, mean.to(components)

    @property
    def num_components(self) -> int:
        return self.components.shape[0]

    @classmethod
    def fit(cls, finger_poses: torch.Tensor, num_components: int) -> "PosePCA":
        """Fit on (N, 15, 3) finger poses (the wrist excluded); keeps the top components."""
        check_tensor("finger_poses", finger_poses, (None, NUM_JOINTS - 1, 3))
        x = finger_poses.reshape(finger_poses.shape[0], _D)
        if not 1 <= num_components <= min(_D, x.shape[0]):
            raise ValueError(f"num_components must be in [1, {min(_D, x.shape[0])}], got {num_components}")
        mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        return cls(vh[:num_components], mean)

    def encode(self, finger_poses: torch.Tensor) -> torch.Tensor:
        """(B, 15, 3) -> (B, K) coefficients (orthogonal projection)."""
        check_tensor("finger_poses", finger_poses, (None, NUM_JOINTS - 1, 3))
        return (finger_poses.reshape(-1, _D) - self.mean) @ self.components.T

    def decode(self, coeffs: torch.Tensor) -> torch.Tensor:
        """(B, K) coefficients -> (B, 15, 3) finger poses."""
        check_tensor("coeffs", coeffs, (None, self.num_components))
        return (self.mean + coeffs @ self.components).reshape(-1, NUM_JOINTS - 1, 3)

    def full_pose(self, wrist: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
        """(B, 3) wrist axis-angle and (B, K) coefficients -> (B, 16, 3) pose."""
        check_tensor("wrist", wrist, (None, 3))
        return torch.cat((wrist[:, None], self.decode(coeffs)), 1)
