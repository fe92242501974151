"""Synthetic pickles laid out like MANO's file, for the MANO backend tests (MANO itself is
never needed): arrays wrapped in a throwaway ``chumpy.ch.Ch`` class that is removed from
``sys.modules`` again, protocol 2, ``J_regressor`` as a scipy sparse matrix."""

from __future__ import annotations

import contextlib
import pickle
import sys
import types

import numpy as np
import scipy.sparse as scipy_sparse

from miho.hand import MANO_PARENTS

ROOT_PARENT = 4294967295  # what MANO's kintree_table stores as the wrist's parent


@contextlib.contextmanager
def fake_chumpy():
    """A throwaway ``chumpy.ch`` module with a class ``Ch`` whose pickled state is its __dict__."""
    assert "chumpy" not in sys.modules, "these tests assume chumpy is not imported"
    pkg = types.ModuleType("chumpy")
    mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, **state):
            self.__dict__.update(state)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    mod.Ch, pkg.ch = Ch, mod
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, mod
    try:
        yield Ch
    finally:
        del sys.modules["chumpy.ch"], sys.modules["chumpy"]


def affine_regressor(template: np.ndarray, joints: np.ndarray, k: int = 4) -> np.ndarray:
    """(16, V) regressor: each joint an affine combination (weights sum to 1) of its k nearest
    vertices, solved by least squares to reproduce the joint."""
    reg = np.zeros((joints.shape[0], template.shape[0]))
    for j, p in enumerate(joints):
        near = np.argsort(((template - p) ** 2).sum(1))[:k]
        a = np.vstack((template[near].T, np.ones(k)))  # (4, k)
        w = np.linalg.lstsq(a, np.append(p, 1.0), rcond=None)[0]
        reg[j, near] = w
    return reg


def synthetic_arrays(template, faces, weights, joints, seed=0, pose_scale=1e-3) -> dict:
    """MANO-layout arrays (numpy, float64) for the given geometry."""
    rng = np.random.default_rng(seed)
    V = template.shape[0]
    q, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    return dict(
        v_template=template,
        f=faces.astype(np.uint32),
        weights=weights,
        kintree_table=np.array([[ROOT_PARENT, *MANO_PARENTS[1:]], list(range(16))], dtype=np.int64),
        J_regressor=affine_regressor(template, joints),
        shapedirs=rng.normal(scale=1e-3, size=(V, 3, 10)),
        posedirs=rng.normal(scale=pose_scale, size=(V, 3, 135)),
        hands_components=q,
        hands_mean=rng.normal(scale=0.1, size=45),
    )


def write_mano_pickle(path, arrays: dict, chumpy_keys=("v_template", "shapedirs", "weights"), fallback_keys=()) -> None:
    """Pickle ``arrays`` like MANO's file: protocol 2, ``J_regressor`` as a scipy csc matrix,
    ``chumpy_keys`` wrapped in ``Ch`` with state ``{"x": array}``, ``fallback_keys`` in ``Ch``
    whose state holds the array under another key."""
    with fake_chumpy() as Ch:
        d = {}
        for k, v in arrays.items():
            if k == "J_regressor":
                v = scipy_sparse.csc_matrix(v)
            elif k in chumpy_keys:
                v = Ch(x=v)
            elif k in fallback_keys:
                v = Ch(label=k, _dirty=None, r=v)
            d[k] = v
        d["bs_style"], d["bs_type"] = "lbs", "lrotmin"
        with open(path, "wb") as fh:
            pickle.dump(d, fh, protocol=2)
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
