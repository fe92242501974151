"""The MANO loader on synthetic pickles laid out like MANO's (MANO itself is never needed).

The synthetic model reuses the default Anny hand's geometry (template, faces, skinning weights)
with a sparse joint regressor, random shape / pose blend shapes and a random PCA basis, pickled
with protocol 2 and with arrays wrapped in a fake ``chumpy.ch.Ch`` class that is removed from
``sys.modules`` before loading, so the loader must work without chumpy. The loaded model is
checked against an independent numpy implementation of MANO's linear blend skinning.
"""

from __future__ import annotations

import io
import sys
import warnings

import numpy as np
import pytest
import torch

scipy_sparse = pytest.importorskip("scipy.sparse")

from mano_synthetic import ROOT_PARENT, synthetic_arrays, write_mano_pickle  # noqa: E402

from miho.hand import MANO_PARENTS, load_hand  # noqa: E402
from miho.hand.mano import (  # noqa: E402
    MANO_TIP_VERTICES,
    _MANOUnpickler,
    load_mano,
    mano_pca_basis,
)
from miho.hand.model import fingertip_vertices  # noqa: E402


@pytest.fixture(scope="module")
def anny():
    h = load_hand(dtype=torch.float64)
    return dict(
        template=h.template.numpy(),
        faces=h.faces.numpy(),
        weights=h.weights.numpy(),
        joints=h.joints.numpy(),
    )


@pytest.fixture(scope="module")
def arrays(anny):
    return synthetic_arrays(**anny)


@pytest.fixture
def mano_file(tmp_path, arrays):
    p = tmp_path / "MANO_RIGHT.pkl"
    write_mano_pickle(p, arrays)
    return p


# ---------------------------------------------------------------------- numpy reference LBS
def rodrigues(r: np.ndarray) -> np.ndarray:
    """(3,) axis-angle -> (3, 3) rotation matrix."""
    theta = np.linalg.norm(r)
    if theta < 1e-12:
        return np.eye(3)
    x, y, z = r / theta
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)


def homog(rot: np.ndarray, t: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, t
    return m


def mano_lbs(a: dict, betas: np.ndarray, pose: np.ndarray, trans: np.ndarray):
    """MANO's forward pass for one hand: (10,) betas, (16, 3) pose, (3,) trans -> vertices
    (V, 3), joints (16, 3)."""
    v_shaped = a["v_template"] + a["shapedirs"] @ betas
    J = a["J_regressor"] @ v_shaped
    R = [rodrigues(p) for p in pose]
    feat = np.concatenate([(R[j] - np.eye(3)).ravel() for j in range(1, 16)])
    v_posed = v_shaped + a["posedirs"] @ feat
    G = [homog(R[0], J[0])]
    for j in range(1, 16):
        p = MANO_PARENTS[j]
        G.append(G[p] @ homog(R[j], J[j] - J[p]))
    A = np.stack([g @ homog(np.eye(3), -J[j]) for j, g in enumerate(G)])  # (16, 4, 4)
    T = np.einsum("vj,jab->vab", a["weights"], A)
    vh = np.concatenate((v_posed, np.ones((len(v_posed), 1))), 1)
    verts = np.einsum("vab,vb->va", T, vh)[:, :3] + trans
    joints = np.stack([g[:3, 3] for g in G]) + trans
    return verts, joints


# ---------------------------------------------------------------------- tests
def _check_loaded(model, arrays, dtype=torch.float32):
    V = arrays["v_template"].shape[0]
    assert model.name == "mano-right" and model.side == "right"
    assert model.num_vertices == V and model.dtype == dtype
    assert model.shape_names == [f"beta{i}" for i in range(10)]
    assert model.pose_dirs is not None and tuple(model.pose_dirs.shape) == (135, V, 3)
    assert torch.equal(model.faces, torch.as_tensor(arrays["f"].astype(np.int64)))


def test_load_from_file_folder_and_env(mano_file, arrays, monkeypatch):
    by_file = load_mano(mano_file)
    _check_loaded(by_file, arrays)
    by_folder = load_mano(str(mano_file.parent))
    _check_loaded(by_folder, arrays)
    assert torch.equal(by_file.template, by_folder.template)
    monkeypatch.setenv("MIHO_MANO_DIR", str(mano_file.parent))
    by_env = load_mano()
    _check_loaded(by_env, arrays)
    assert torch.equal(by_env.pose_dirs, by_file.pose_dirs)
    via_load_hand = load_hand("mano", dtype=torch.float64)
    _check_loaded(via_load_hand, arrays, torch.float64)
    assert "chumpy" not in sys.modules


def test_arrays_in_model_layout(mano_file, arrays):
    m = load_mano(mano_file, dtype=torch.float64)
    a = arrays
    np.testing.assert_array_equal(m.template.numpy(), a["v_template"])
    np.testing.assert_array_equal(m.weights.numpy(), a["weights"])
    np.testing.assert_allclose(m.joints.numpy(), a["J_regressor"] @ a["v_template"], atol=1e-12)
    np.testing.assert_array_equal(m.shape_dirs.numpy(), a["shapedirs"].transpose(2, 0, 1))
    np.testing.assert_array_equal(m.shape_dirs_neg.numpy(), -a["shapedirs"].transpose(2, 0, 1))
    js = np.stack([a["J_regressor"] @ a["shapedirs"][:, :, s] for s in range(10)])
    np.testing.assert_allclose(m.joint_shape_dirs.numpy(), js, atol=1e-14)
    np.testing.assert_array_equal(m.pose_dirs.numpy(), a["posedirs"].transpose(2, 0, 1))
    assert tuple(m.parents.tolist()) == MANO_PARENTS
    tips = fingertip_vertices(m.template, m.weights, m.joints)
    assert torch.equal(m.tip_vertices, tips)


@pytest.mark.parametrize("pose_scale", [0.0, 1e-2])
def test_matches_numpy_mano_lbs(tmp_path, anny, pose_scale):
    a = synthetic_arrays(**anny, seed=1, pose_scale=pose_scale)
    write_mano_pickle(tmp_path / "MANO_RIGHT.pkl", a)
    m = load_mano(tmp_path, dtype=torch.float64)
    rng = np.random.default_rng(2)
    B = 4
    betas = rng.normal(scale=2.0, size=(B, 10))
    pose = rng.normal(scale=0.6, size=(B, 16, 3))
    trans = rng.normal(scale=0.1, size=(B, 3))
    out = m(torch.as_tensor(pose), torch.as_tensor(betas), torch.as_tensor(trans))
    for b in range(B):
        v, j = mano_lbs(a, betas[b], pose[b], trans[b])
        assert np.abs(out.vertices[b].numpy() - v).max() < 1e-6
        assert np.abs(out.joints[b].numpy() - j).max() < 1e-6
        # Pose blend shapes matter for the nonzero case: the reference without them differs.
        if pose_scale:
            v0, _ = mano_lbs({**a, "posedirs": 0 * a["posedirs"]}, betas[b], pose[b], trans[b])
            assert np.abs(v0 - v).max() > 1e-4


def test_zero_posedirs_matches_anny_hand(tmp_path, anny):
    """Same template, weights and (regressed) joints: same skinning as the Anny hand at zero
    shape."""
    a = synthetic_arrays(**anny, seed=3, pose_scale=0.0)
    write_mano_pickle(tmp_path / "MANO_RIGHT.pkl", a)
    m = load_mano(tmp_path, dtype=torch.float64)
    h = load_hand(dtype=torch.float64)
    assert (m.joints - h.joints).abs().max() < 1e-9  # the regressor reproduces Anny's joints
    pose = torch.as_tensor(np.random.default_rng(4).normal(scale=0.5, size=(3, 16, 3)))
    assert (m(pose).vertices - h(pose).vertices).abs().max() < 1e-6


def test_chumpy_state_without_x(tmp_path, arrays):
    """A chumpy object whose state has no ``x`` gives its first array."""
    p = tmp_path / "MANO_RIGHT.pkl"
    write_mano_pickle(p, arrays, chumpy_keys=("v_template",), fallback_keys=("shapedirs", "weights"))
    m = load_mano(p, dtype=torch.float64)
    np.testing.assert_array_equal(m.weights.numpy(), arrays["weights"])
    np.testing.assert_array_equal(m.shape_dirs.numpy(), arrays["shapedirs"].transpose(2, 0, 1))


def test_left_side_from_folder(tmp_path, arrays):
    write_mano_pickle(tmp_path / "MANO_LEFT.pkl", arrays)
    m = load_mano(tmp_path, side="left")
    assert m.name == "mano-left" and m.side == "left"
    with pytest.raises(FileNotFoundError, match="MANO_RIGHT.pkl"):
        load_mano(tmp_path)  # only the left file is there
    with pytest.raises(ValueError, match="side"):
        load_mano(tmp_path, side="both")


def test_mano_sized_mesh_uses_standard_tips(tmp_path, anny):
    """With MANO's 778 vertices the fingertips are MANO's standard tip vertices."""
    V = 778
    faces = anny["faces"][(anny["faces"] < V).all(1)]
    assert len(faces) > 0
    geom = dict(template=anny["template"][:V], faces=faces, weights=anny["weights"][:V],
                joints=anny["joints"])  # fmt: skip
    write_mano_pickle(tmp_path / "MANO_RIGHT.pkl", synthetic_arrays(**geom))
    m = load_mano(tmp_path)
    assert m.tip_vertices.tolist() == list(MANO_TIP_VERTICES) == [745, 317, 444, 556, 673]


def test_missing_file_explains_how_to_get_mano(tmp_path, monkeypatch):
    for call in (lambda: load_mano(tmp_path / "nowhere"), lambda: load_mano(tmp_path)):
        with pytest.raises(FileNotFoundError) as e:
            call()
        msg = str(e.value)
        assert "MIHO_MANO_DIR" in msg and "mano.is.tue.mpg.de" in msg
        assert "mano_v1_2/models/MANO_RIGHT.pkl" in msg and "licensed" in msg
    monkeypatch.delenv("MIHO_MANO_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="MIHO_MANO_DIR"):
        load_mano()
    with pytest.raises(FileNotFoundError, match="mano.is.tue.mpg.de"):
        mano_pca_basis()
    with pytest.raises(FileNotFoundError, match="MIHO_MANO_DIR"):
        load_hand("mano")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (
            "kintree_table",
            np.array([[ROOT_PARENT, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 13], list(range(16))]),
            "kintree_table",
        ),
        ("kintree_table", np.zeros((2, 15), dtype=np.int64), r"kintree_table.*\(2, 15\)"),
        ("v_template", "drop_last_column", r"v_template.*\(1609, 2\)"),
        ("posedirs", np.zeros((1609, 3, 10)), r"posedirs.*\(1609, 3, 10\)"),
        ("J_regressor", np.zeros((21, 1609)), r"J_regressor.*\(21, 1609\)"),
        ("weights", None, "no key 'weights'"),
    ],
)
def test_bad_layout_raises_value_error(tmp_path, arrays, key, value, match):
    bad = dict(arrays)
    if value is None:
        del bad[key]
    elif isinstance(value, str):
        bad[key] = bad[key][:, :2]
    else:
        bad[key] = value
    p = tmp_path / "MANO_RIGHT.pkl"
    write_mano_pickle(p, bad)
    with pytest.raises(ValueError, match=match):
        load_mano(p)


def test_pca_basis(mano_file, arrays, monkeypatch):
    comps, mean = mano_pca_basis(mano_file)
    assert comps.shape == (45, 45) and mean.shape == (45,)
    np.testing.assert_array_equal(comps, arrays["hands_components"])
    np.testing.assert_array_equal(mean, arrays["hands_mean"])
    np.testing.assert_allclose(comps @ comps.T, np.eye(45), atol=1e-12)
    monkeypatch.setenv("MIHO_MANO_DIR", str(mano_file.parent))
    comps2, _ = mano_pca_basis()
    np.testing.assert_array_equal(comps2, comps)


def test_missing_scipy_says_pip_install(mano_file, monkeypatch):
    for name in [n for n in sys.modules if n == "scipy" or n.startswith("scipy.")]:
        monkeypatch.setitem(sys.modules, name, None)  # a None entry makes the import fail
    with pytest.raises(ImportError, match="pip install scipy"):
        load_mano(mano_file)


def test_unpickler_maps_old_module_paths():
    u = _MANOUnpickler(io.BytesIO(b""), encoding="latin1")
    assert u.find_class("scipy.sparse.csc", "csc_matrix") is scipy_sparse.csc_matrix
    assert u.find_class("scipy.sparse.gone_in_new_scipy", "csc_matrix") is scipy_sparse.csc_matrix
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = u.find_class("numpy.core.multiarray", "_reconstruct")
    assert callable(rec)
    stand_in = u.find_class("chumpy.reordering", "Select")
    assert "chumpy.reordering.Select" in repr(stand_in())
