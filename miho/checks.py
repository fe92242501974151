"""Input checks shared by every public entry point of the package.

Each check raises a ``ValueError`` that names the argument and says what is wrong with it (wrong
type, shape or dtype, NaN / inf, indices out of range, an empty mesh), so a bad input fails at the
door instead of deep inside torch or, worse, giving a silently wrong number. Shapes are written
as tuples whose entries are an ``int`` (that size exactly) or ``None`` (any size, zero included:
an empty batch passes and the caller returns an empty result); a leading ``...`` stands for any
number of leading dimensions.

Value checks (NaN / inf, index ranges) read the tensor's values, which on an accelerator waits
for the device (a sync). Functions that an optimiser calls in every iteration ask for them with
``finite="cpu"``: checked on a CPU tensor, where it costs no sync; elsewhere NaN then flows into
the output (GeO checks its loss once an iteration).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "check_tensor", "check_integer", "check_index", "check_points", "check_faces", "check_mask", "check_batch",
    "check_device", "shape_text",
]  # fmt: skip


def shape_text(shape: tuple) -> str:
    """``(None, 3)`` -> ``"(*, 3)"``, ``(..., 3)`` -> ``"(..., 3)"``."""
    return "(" + ", ".join("*" if s is None else "..." if s is Ellipsis else str(s) for s in shape) + ")"


def _shape_ok(shape: tuple, actual: torch.Size) -> bool:
    if shape[:1] == (...,):
        shape = shape[1:]
        if len(actual) < len(shape):
            return False
        actual = actual[len(actual) - len(shape) :]
    return len(actual) == len(shape) and all(s is None or s == d for s, d in zip(shape, actual))


def check_tensor(name: str, t, shape: tuple | None = None, *, floating: bool = True, finite: bool | str = True) -> None:
    """Raise ``ValueError`` unless ``t`` is a tensor of ``shape`` (None entries: any size).

    Args:
        name: the argument's name, used in the message.
        t: the value to check.
        shape: expected shape, or None for any.
        floating: the tensor must have a floating-point dtype (vertex positions, poses...).
        finite: no NaN or inf (floating tensors only); ``"cpu"``: only checked on a CPU tensor
            (see the module docstring).
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if shape is not None and not _shape_ok(shape, t.shape):
        raise ValueError(f"{name} must have shape {shape_text(shape)}, got {tuple(t.shape)}")
    if floating and not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if t.is_floating_point() and _reads(t, finite) and not _all_finite(t):
        raise ValueError(f"{name} contains NaN or inf")


def _all_finite(t: torch.Tensor) -> bool:
    # A finite sum means finite entries (a NaN or inf entry makes it NaN or inf): one cheap
    # reduction; only a sum that overflows needs the entry-wise test.
    return math.isfinite(t.sum().item()) or bool(torch.isfinite(t).all())


def _reads(t: torch.Tensor, mode: bool | str) -> bool:
    """Whether a value check in ``mode`` (True, False or "cpu") reads ``t``."""
    return t.device.type == "cpu" if mode == "cpu" else bool(mode) and t.device.type != "meta"


def check_integer(name: str, t, shape: tuple | None = None) -> None:
    """``t`` must be an integer (not bool) tensor of ``shape``."""
    check_tensor(name, t, shape, floating=False)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {t.dtype}")


def check_index(
    name: str, t, shape: tuple | None, size: int, *, read: bool | str = True, what: str = "vertices"
) -> None:
    """``t`` must be an integer tensor of ``shape`` whose entries index ``[0, size)`` (``what``
    names the indexed things); ``read`` as ``finite`` in :func:`check_tensor`."""
    check_integer(name, t, shape)
    if t.numel() and _reads(t, read):
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= size:
            raise ValueError(f"{name} index {what} outside [0, {size}) (found {lo}..{hi})")


def check_points(name: str, t, batch: int | None = None, count: int | None = None) -> None:
    """``t`` must be a finite floating (batch, count, 3) tensor of positions (None: any size)."""
    check_tensor(name, t, (batch, count, 3))


def check_faces(name: str, faces, num_verts: int, batch: int | None = None, allow_empty: bool = False) -> None:
    """``faces`` must be an integer (F, 3) tensor (or (batch, F, 3) when ``batch`` is given) whose
    entries index ``[0, num_verts)``; F > 0 unless ``allow_empty``."""
    shape = (None, 3) if batch is None else (batch, None, 3)
    check_integer(name, faces, shape)
    if faces.shape[-2] == 0 and not allow_empty:
        raise ValueError(f"{name} holds no face")
    check_index(name, faces, shape, num_verts)


def check_mask(name: str, mask, shape: tuple) -> None:
    """``mask`` must be a bool tensor of exactly ``shape``."""
    check_tensor(name, mask, shape, floating=False)
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got {mask.dtype}")


def check_device(name: str, t: torch.Tensor, device: torch.device, what: str) -> None:
    """``t`` must be on ``device``, where ``what`` (e.g. "the hand model") lives."""
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but {what} is on {device}")


def check_batch(name: str, size: int, expected: int, what: str = "the batch") -> None:
    """A batch dimension of ``size`` where ``expected`` is needed."""
    if size != expected:
        raise ValueError(f"{name} has batch {size} but {what} has {expected}")
