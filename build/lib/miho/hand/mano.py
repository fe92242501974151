"""MANO as a :class:`~miho.hand.model.HandModel`, read from the user's own licensed pickle.

MANO (Romero, Tzionas & Black, 2017) is licensed and is **not** shipped with miho. Register at
https://mano.is.tue.mpg.de, download "Models & Code", and take ``mano_v1_2/models/MANO_RIGHT.pkl``
(and ``MANO_LEFT.pkl`` for left hands) from the archive. Then either pass ``path=`` (the file or
its folder) or set the environment variable ``MIHO_MANO_DIR`` to the folder holding it.

The pickle was written by Python 2 and wraps most arrays in ``chumpy`` objects. ``chumpy`` is
not needed: :class:`_MANOUnpickler` replaces every ``chumpy`` class by a stand-in that keeps the
pickled state, from which the array is recovered. The joint regressor is a ``scipy.sparse``
matrix, so reading it needs scipy (the optional extra ``miho[mano]``).

Arrays read from the pickle (V = 778 vertices, 16 joints, 10 shape coefficients), metres:

* ``v_template`` (V, 3) rest vertices; ``f`` (1538, 3) triangles;
* ``weights`` (V, 16) skinning weights; ``kintree_table`` (2, 16): first row the parent of the
  joint named in the second row (the root's parent is a large unsigned number);
* ``J_regressor`` (16, V) sparse: rest joints as linear combinations of vertices;
* ``shapedirs`` (V, 3, 10) shape blend shapes; ``posedirs`` (V, 3, 135) pose blend shapes whose
  feature ``k`` is element ``k`` of the row-major flattened (15, 3, 3) stack ``R_j - I`` of the
  joints 1..15 (exactly what :meth:`HandModel.forward` computes);
* ``hands_components`` (45, 45) and ``hands_mean`` (45,): MANO's PCA pose space over the 15
  finger joints' axis-angles (see :func:`mano_pca_basis`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from miho.hand.model import MANO_PARENTS, NUM_JOINTS, HandModel, fingertip_vertices

#: Environment variable naming the folder that holds ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``.
ENV_VAR = "MIHO_MANO_DIR"
MANO_URL = "https://mano.is.tue.mpg.de"
#: MANO's vertex count; its fingertip vertex ids below are only meaningful for it.
MANO_NUM_VERTICES = 778
#: Standard MANO fingertip vertex ids, thumb, index, middle, ring, little.
MANO_TIP_VERTICES = (745, 317, 444, 556, 673)
NUM_POSE_FEATURES = 9 * (NUM_JOINTS - 1)  # 135


# ---------------------------------------------------------------------- reading the pickle
class ChumpyStandIn:
    """Replaces any ``chumpy`` class while unpickling: keeps the pickled state, nothing else.

    ``state`` is the dict the pickle restored (chumpy's ``Ch`` stores its value under ``"x"``).
    """

    chumpy_class = "chumpy.?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        self.state = {}

    def __setstate__(self, state) -> None:
        # Protocol 2 may give (dict state, slot state); merge both.
        if isinstance(state, tuple) and len(state) == 2:
            merged = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            state = merged
        self.state = state if isinstance(state, dict) else {"x": state}

    def to_numpy(self) -> np.ndarray:
        """The wrapped array: ``state["x"]``, else the first array found in the state."""
        if "x" in self.state:
            return _as_numpy(self.state["x"], "chumpy value")
        for value in self.state.values():
            if isinstance(value, np.ndarray):
                return value
        for value in self.state.values():  # nested chumpy objects
            if isinstance(value, ChumpyStandIn):
                try:
                    return value.to_numpy()
                except ValueError:
                    continue
        raise ValueError(
            f"cannot recover an array from a pickled {self.chumpy_class} (state keys: {sorted(map(str, self.state))})"
        )

    def __repr__(self) -> str:
        return f"<stand-in for {self.chumpy_class}>"


_STAND_INS: dict[str, type] = {}


def _stand_in(module: str, name: str) -> type:
    """One :class:`ChumpyStandIn` subclass per chumpy class name (cached)."""
    key = f"{module}.{name}"
    if key not in _STAND_INS:
        _STAND_INS[key] = type(f"ChumpyStandIn_{name}", (ChumpyStandIn,), {"chumpy_class": key})
    return _STAND_INS[key]


class _MANOUnpickler(pickle.Unpickler):
    """Unpickler for MANO's Python 2 pickle that needs neither chumpy nor Python 2."""

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return _stand_in(module, name)
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            # numpy >= 2 moved numpy.core to numpy._core; skip the deprecation shim.
            try:
                return super().find_class("numpy._core" + module[len("numpy.core") :], name)
            except (ImportError, AttributeError):
                pass
        if module == "scipy" or module.startswith("scipy."):
            try:
                import scipy.sparse
            except ImportError as e:
                raise ImportError(
                    "The MANO pickle stores its joint regressor as a scipy.sparse matrix; "
                    "reading it needs scipy: pip install scipy  (or pip install 'miho[mano]')"
                ) from e
            if module.startswith("scipy.sparse") and hasattr(scipy.sparse, name):
                # MANO names old private paths (scipy.sparse.csc.csc_matrix) that new scipy
                # deprecates or removes; the public namespace has the same class.
                return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def _as_numpy(obj, key: str) -> np.ndarray:
    """A pickled value (ndarray, chumpy stand-in, scipy sparse matrix, list) as an ndarray."""
    if isinstance(obj, ChumpyStandIn):
        return obj.to_numpy()
    if hasattr(obj, "toarray"):  # scipy.sparse
        return np.asarray(obj.toarray())
    try:
        return np.asarray(obj)
    except Exception as e:  # pragma: no cover - unexpected pickle content
        kind = type(obj).__name__
        raise ValueError(f"MANO key {key!r}: cannot convert {kind} to an array") from e


def read_mano_pickle(path) -> dict:
    """The raw entries of a MANO pickle, read without chumpy.

    Args:
        path: the ``.pkl`` file.

    Returns:
        Dict key -> value as pickled, ``chumpy`` objects replaced by :class:`ChumpyStandIn`
        (use :func:`mano_array` to get any entry as a dense ndarray).
    """
    with open(path, "rb") as fh:
        raw = _MANOUnpickler(fh, encoding="latin1").load()
    if not isinstance(raw, dict):
        raise ValueError(f"{path} does not hold a MANO model (a dict), got {type(raw).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}


# ---------------------------------------------------------------------- locating the file
def _missing(what: str, side: str) -> FileNotFoundError:
    fname = f"MANO_{side.upper()}.pkl"
    return FileNotFoundError(
        f"{what}. MANO is licensed and not shipped with miho: register at {MANO_URL} and "
        f"download 'Models & Code', then take mano_v1_2/models/{fname} from the archive and "
        f"either pass path= (the file or its folder) or set the environment variable "
        f"{ENV_VAR} to the folder holding {fname}. (miho never downloads it.)"
    )


def resolve_mano_path(path=None, side: str = "right") -> Path:
    """The MANO pickle to read: ``path`` (file or folder) or ``$MIHO_MANO_DIR``.

    Raises:
        ValueError: ``side`` is neither ``"right"`` nor ``"left"``.
        FileNotFoundError: no such file (the message says how to obtain MANO).
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    fname = f"MANO_{side.upper()}.pkl"
    if path is None:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise _missing(f"No MANO model given: path=None and ${ENV_VAR} is not set", side)
        path = env
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / fname
    if not p.is_file():
        raise _missing(f"MANO model file {p} not found", side)
    return p


# ---------------------------------------------------------------------- building the model
def mano_array(data: dict, key: str, path="MANO pickle") -> np.ndarray:
    """Entry ``key`` of a read MANO pickle as a dense ndarray (chumpy and sparse unwrapped).

    Raises:
        ValueError: the key is missing or its value holds no array.
    """
    if key not in data:
        raise ValueError(f"{path}: MANO pickle has no key {key!r} (keys: {sorted(data)})")
    return _as_numpy(data[key], key)


def _check_shape(key: str, a: np.ndarray, shape: tuple) -> None:
    if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"MANO key {key!r} must have shape {want}, got {tuple(a.shape)}")


def _parents(kintree: np.ndarray) -> tuple[int, ...]:
    """(2, 16) MANO kintree table -> parent id per joint id (-1 for the root)."""
    _check_shape("kintree_table", kintree, (2, NUM_JOINTS))
    ids = kintree[1].astype(np.int64)
    if sorted(ids.tolist()) != list(range(NUM_JOINTS)):
        raise ValueError(f"MANO key 'kintree_table': second row must list joints 0..15, got {ids.tolist()}")
    parents = [0] * NUM_JOINTS
    for j, p in zip(ids.tolist(), kintree[0].tolist()):
        p = int(p)
        parents[j] = p if 0 <= p < NUM_JOINTS else -1  # root: 2**32 - 1 or similar
    if tuple(parents) != MANO_PARENTS:
        raise ValueError(f"MANO key 'kintree_table': parents {tuple(parents)} do not match MANO's tree {MANO_PARENTS}")
    return tuple(parents)


def mano_arrays(data: dict, path="MANO pickle") -> dict[str, np.ndarray]:
    """Checked float64 arrays in :class:`HandModel`'s layout from a read MANO pickle.

    Args:
        data: what :func:`read_mano_pickle` returned. path: named in error messages.

    Returns:
        template (V, 3), faces (F, 3) int64, weights (V, 16), joints (16, 3),
        shape_dirs (S, V, 3), joint_shape_dirs (S, 16, 3), pose_dirs (135, V, 3), parents (16,).

    Raises:
        ValueError: a missing key, a wrong shape or a kinematic tree other than MANO's.
    """
    template = mano_array(data, "v_template", path).astype(np.float64)
    _check_shape("v_template", template, (None, 3))
    V = template.shape[0]
    faces = mano_array(data, "f", path).astype(np.int64)
    _check_shape("f", faces, (None, 3))
    if faces.size and (faces.min() < 0 or faces.max() >= V):
        raise ValueError(f"MANO key 'f' indexes vertices outside [0, {V})")
    weights = mano_array(data, "weights", path).astype(np.float64)
    _check_shape("weights", weights, (V, NUM_JOINTS))
    parents = _parents(mano_array(data, "kintree_table", path))
    regressor = mano_array(data, "J_regressor", path).astype(np.float64)
    _check_shape("J_regressor", regressor, (NUM_JOINTS, V))
    shapedirs = mano_array(data, "shapedirs", path).astype(np.float64)
    _check_shape("shapedirs", shapedirs, (V, 3, None))
    posedirs = mano_array(data, "posedirs", path).astype(np.float64)
    _check_shape("posedirs", posedirs, (V, 3, NUM_POSE_FEATURES))

    shape_dirs = np.ascontiguousarray(shapedirs.transpose(2, 0, 1))  # (S, V, 3)
    return dict(
        template=template,
        faces=faces,
        weights=weights,
        joints=regressor @ template,
        shape_dirs=shape_dirs,
        joint_shape_dirs=np.einsum("jv,svc->sjc", regressor, shape_dirs),
        pose_dirs=np.ascontiguousarray(posedirs.transpose(2, 0, 1)),  # (135, V, 3)
        parents=np.asarray(parents, dtype=np.int64),
    )


def load_mano(path=None, device="cpu", dtype=torch.float32, side: str = "right") -> HandModel:
    """MANO as a :class:`HandModel` (linear shape space, pose blend shapes), metres.

    Args:
        path: the MANO ``.pkl`` file or a folder holding ``MANO_RIGHT.pkl`` /
            ``MANO_LEFT.pkl``; ``None`` reads the folder named by ``$MIHO_MANO_DIR``.
        device, dtype: where the model's tensors live and their floating type.
        side: ``"right"`` or ``"left"`` (picks the file inside a folder and names the model).

    Returns:
        A :class:`HandModel` named ``"mano-right"`` / ``"mano-left"`` with shape coefficients
        ``beta0 .. beta9``; fingertips are MANO's standard tip vertices.

    Raises:
        FileNotFoundError: no MANO file (MANO is licensed; the message says how to get it).
        ImportError: scipy is missing (needed for the sparse joint regressor).
        ValueError: the file is not laid out like MANO.
    """
    p = resolve_mano_path(path, side)
    data = read_mano_pickle(p)
    a = mano_arrays(data, p)
    V = a["template"].shape[0]
    keys = ("template", "weights", "joints", "shape_dirs", "joint_shape_dirs", "pose_dirs")
    t = {k: torch.as_tensor(a[k], dtype=torch.float64) for k in keys}
    if V == MANO_NUM_VERTICES:
        tips = torch.tensor(MANO_TIP_VERTICES, dtype=torch.long)
    else:
        tips = fingertip_vertices(t["template"], t["weights"], t["joints"])
    model = HandModel(
        name=f"mano-{side}",
        faces=torch.as_tensor(a["faces"]),
        tip_vertices=tips,
        shape_names=[f"beta{i}" for i in range(a["shape_dirs"].shape[0])],
        parents=torch.as_tensor(a["parents"]),
        side=side,
        **t,
    )
    return model.to(device, dtype)


def mano_pca_basis(path=None, side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """MANO's PCA pose space from the same pickle.

    Args:
        path, side: as for :func:`load_mano`.

    Returns:
        ``components`` (45, 45), one principal direction per row over the 15 finger joints'
        axis-angles (radians, joint order 1..15, xyz), and ``mean`` (45,), the mean finger pose;
        a finger pose is ``mean + coeffs @ components[:k]``. Both float64.
    """
    p = resolve_mano_path(path, side)
    data = read_mano_pickle(p)
    comps = mano_array(data, "hands_components", p).astype(np.float64)
    _check_shape("hands_components", comps, (3 * (NUM_JOINTS - 1), 3 * (NUM_JOINTS - 1)))
    mean = mano_array(data, "hands_mean", p).astype(np.float64)
    _check_shape("hands_mean", mean, (3 * (NUM_JOINTS - 1),))
    return comps, mean
