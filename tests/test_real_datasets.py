"""Converters of FHB and HO3D v2, each on a tiny fixture laid out like the original files, with a
synthetic MANO-layout model (MANO itself is never needed)."""

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

sys.path.insert(0, str(Path(__file__).parent))
from mano_synthetic import synthetic_arrays, write_mano_pickle  # noqa: E402

from miho import amano  # noqa: E402
from miho.data import real  # noqa: E402
from miho.hand import load_hand  # noqa: E402
from miho.mesh import box  # noqa: E402
from miho.rotations import (  # noqa: E402
    RigidMotion,  # noqa: E402
    axis_angle_to_matrix,
    matrix_to_axis_angle,
)


@pytest.fixture(scope="module")
def mano_path(tmp_path_factory):
    h = load_hand(dtype=torch.float64)
    path = tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"
    write_mano_pickle(path, synthetic_arrays(h.template.numpy(), h.faces.numpy(), h.weights.numpy(), h.joints.numpy()))
    return path


@pytest.fixture(scope="module")
def mano(mano_path):
    return load_hand("mano", path=mano_path, dtype=torch.float64)


def _box_mesh():
    v, f = box((0.06, 0.06, 0.10), divisions=4, dtype=torch.float64)
    return v.numpy(), f.numpy()


def _grasp(mano):
    """A curled hand (pose, shape, trans) and a point on its palm side, MANO's own frame."""
    pose = amano.curl_pose(mano, 0.3).double()
    pose[0, 0] = torch.tensor([0.2, -0.4, 0.3], dtype=torch.float64)
    shape = torch.linspace(-0.5, 0.5, 10, dtype=torch.float64)[None]
    trans = torch.tensor([[0.02, -0.01, 0.45]], dtype=torch.float64)
    with torch.no_grad():
        out = mano(pose, shape, trans)
    return pose, shape, trans, out


# ---------------------------------------------------------------------- HO3D
def _write_obj(path: Path, v, f):
    path.parent.mkdir(parents=True, exist_ok=True)
    faces = "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f)
    path.write_text("".join(f"v {a} {b} {c}\n" for a, b, c in v) + faces)


@pytest.fixture
def ho3d(tmp_path, mano):
    """HO3D_v2-like folder: train/MC1 with a touching frame and a far one, evaluation/SM1 with a
    hidden hand, YCB models, the split lists and one PNG."""
    root, ycb = tmp_path / "HO3D_v2", tmp_path / "ycb"
    v, f = _box_mesh()
    _write_obj(ycb / "003_cracker_box" / "textured_simple.obj", v, f)
    pose, shape, trans, out = _grasp(mano)
    rot = np.array([0.3, 0.2, -0.1])
    R = axis_angle_to_matrix(torch.tensor(rot)).numpy()
    touch = out.vertices[0, 100].numpy() - R @ np.array([0.03, 0.0, 0.0])  # a box face through a hand vertex
    metas = {
        ("train", "MC1", "0000"): dict(objTrans=touch),
        ("train", "MC1", "0001"): dict(objTrans=touch + np.array([0.2, 0.0, 0.0])),  # 20 cm away: dropped
        ("evaluation", "SM1", "0003"): dict(objTrans=touch, hidden=True),
    }
    for (split, seq, frame), m in metas.items():
        # HO3D stores everything in OpenGL camera coordinates: y up, z towards the viewer.
        meta = dict(objName="003_cracker_box", objTrans=real.GL_TO_CV @ m["objTrans"],
                    objRot=matrix_to_axis_angle(torch.tensor(real.GL_TO_CV @ R)).numpy().reshape(3, 1),
                    camMat=np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]]))  # fmt: skip
        if m.get("hidden"):
            meta.update(handPose=None, handBeta=None, handTrans=None)
        else:
            # The OpenCV-frame hand of _grasp, re-expressed in OpenGL coordinates.
            p_gl, t_gl = RigidMotion(real.GL_TO_CV, torch.zeros(3)).hand(mano, pose, shape, trans)
            meta.update(handPose=p_gl[0].reshape(48).numpy(), handBeta=shape[0].numpy(), handTrans=t_gl[0].numpy())
        d = root / split / seq / "meta"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"{frame}.pkl", "wb") as fh:
            pickle.dump(meta, fh, protocol=2)
    (root / "train.txt").write_text("MC1/0000\nMC1/0001\n")
    (root / "evaluation.txt").write_text("SM1/0003\n")
    (root / "train" / "MC1" / "rgb").mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(root / "train" / "MC1" / "rgb" / "0000.png")
    return dict(root=root, ycb=ycb, out=out, R=R, t=touch, box=(v, f))


def test_ho3d_train_frames_are_converted_and_filtered(ho3d, mano_path, tmp_path):
    samples, objects = real.convert_ho3d(ho3d["root"], ho3d["ycb"], "train", mano_path, progress=False)
    assert samples["info"]["converted"] == 2 and samples["info"]["kept"] == 1  # the far frame is dropped
    path = tmp_path / "ho3d.npz"
    real.save_converted(path, samples, objects)
    ds = real.ConvertedHO(path, root=ho3d["root"], mano_path=mano_path)
    s = ds[0]
    # The hand and the object come back in the OpenCV camera frame where they were made.
    assert torch.allclose(s["hand_verts"], ho3d["out"].vertices[0], atol=1e-7)
    v, _ = ho3d["box"]
    want = torch.tensor(v @ ho3d["R"].T + ho3d["t"])
    assert torch.allclose(s["obj_verts"], want, atol=1e-7)
    assert s["vc"].sum() > 0 and s["image"].shape == (3, 48, 64)
    uv = s["joints"] @ s["K"].T
    assert torch.allclose(uv[:, :2] / uv[:, 2:], s["joints_2d"])


def test_ho3d_evaluation_selection_keeps_hidden_hands(ho3d, mano_path):
    sel = {"SM1": ((0, 2),)}
    with pytest.raises(ValueError, match="no HO3D evaluation sample"):
        real.convert_ho3d(ho3d["root"], ho3d["ycb"], "evaluation", mano_path, selection=sel, progress=False)
    samples, _ = real.convert_ho3d(ho3d["root"], ho3d["ycb"], "evaluation", mano_path, selection=real.HO3DV2_MINUS,
                                   progress=False)  # fmt: skip
    assert samples["info"]["kept"] == 1 and np.isnan(samples["hand_pose"]).all()
    assert real._selected("MPM12", 500, real.HO3DV2_MINUS) is False
    assert real._selected("MPM12", 600, real.HO3DV2_MINUS) and real._selected("SB13", 1686, real.HO3DV2_MINUS)


def test_missing_dataset_or_mano_is_named(tmp_path, mano_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="train.txt"):
        real.convert_ho3d(tmp_path, tmp_path, "train", mano_path, progress=False)
    with pytest.raises(FileNotFoundError, match="data_split_action_recognition"):
        real.convert_fhb(tmp_path, "train", mano_path, progress=False)
    monkeypatch.delenv("MIHO_MANO_DIR", raising=False)
    (tmp_path / "train.txt").write_text("MC1/0000\n")
    with pytest.raises(FileNotFoundError, match="MIHO_MANO_DIR"):
        real.convert_ho3d(tmp_path, tmp_path, "train", None, progress=False)


# ---------------------------------------------------------------------- FHB
def _write_ply(path: Path, v, f, binary: bool):
    path.parent.mkdir(parents=True, exist_ok=True)
    head = (f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\nelement vertex {len(v)}\n"
            "property float x\nproperty float y\nproperty float z\n"
            f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n")  # fmt: skip
    with open(path, "wb") as fh:
        fh.write(head.encode())
        if binary:
            fh.write(np.asarray(v, "<f4").tobytes())
            for tri in f:
                fh.write(np.uint8(3).tobytes() + np.asarray(tri, "<i4").tobytes())
        else:
            fh.write("".join(f"{a} {b} {c}\n" for a, b, c in np.asarray(v, np.float32)).encode())
            fh.write("".join(f"3 {a} {b} {c}\n" for a, b, c in f).encode())


@pytest.mark.parametrize("binary", [False, True])
def test_read_ply_matches_trimesh(tmp_path, binary):
    v, f = _box_mesh()
    _write_ply(tmp_path / "box.ply", v, f, binary)
    rv, rf = real.read_ply(tmp_path / "box.ply")
    ref = trimesh.load(tmp_path / "box.ply", process=False)
    assert np.allclose(rv, ref.vertices) and np.array_equal(rf, ref.faces)


def test_fhb_action_split_is_converted_with_a_fitted_hand(tmp_path, mano, mano_path):
    root = tmp_path / "fhbhands"
    v, f = _box_mesh()
    _write_ply(root / "Object_models" / "milk_model" / "milk_model.ply", v, f, binary=True)
    (root / "data_split_action_recognition.txt").write_text(
        "Training 2\nSubject_1/pour_milk/1 12\nSubject_1/charge_cell_phone/1 3\nTest 1\nSubject_2/pour_milk/1 12\n"
    )
    assert real.fhb_sequences(root, "train") == [("Subject_1", "pour_milk", "1")]
    pose, shape, trans, out = _grasp(mano)
    with torch.no_grad():
        out = mano(pose, torch.zeros(1, 10, dtype=torch.float64), trans)  # FHB hands are fitted at mean shape
    joints_cam = out.joints21[0].numpy()  # metres, camera
    fhb_order = np.zeros((21, 3))
    fhb_order[list(real.FHB_TO_MIHO)] = joints_cam
    world = (np.linalg.inv(real.FHB_CAM_EXTR) @ np.c_[1000 * fhb_order, np.ones(21)].T).T[:, :3]  # mm
    R = axis_angle_to_matrix(torch.tensor([0.1, 0.5, -0.2], dtype=torch.float64)).numpy()
    near = out.vertices[0, 100].numpy() - R @ np.array([0.03, 0.0, 0.0])
    lines_s, lines_o = [], []
    for frame, offset in ((0, 0.0), (1, 0.3)):  # frame 1: the object 30 cm away
        T_cam = np.eye(4)
        T_cam[:3, :3], T_cam[:3, 3] = R, 1000 * (near + np.array([offset, 0, 0]))
        T_world = np.linalg.inv(real.FHB_CAM_EXTR) @ T_cam
        lines_s.append(f"{frame} " + " ".join(f"{x:.6f}" for x in world.reshape(-1)))
        lines_o.append(f"{frame} " + " ".join(f"{x:.9f}" for x in T_world.T.reshape(-1)))  # column by column
    seq = ("Subject_1", "pour_milk", "1")
    (root / "Hand_pose_annotation_v1" / Path(*seq)).mkdir(parents=True)
    (root / "Hand_pose_annotation_v1" / Path(*seq) / "skeleton.txt").write_text("\n".join(lines_s) + "\n")
    (root / "Object_6D_pose_annotation_v1_1" / Path(*seq)).mkdir(parents=True)
    (root / "Object_6D_pose_annotation_v1_1" / Path(*seq) / "object_pose.txt").write_text("\n".join(lines_o) + "\n")
    samples, objects = real.convert_fhb(root, "train", mano_path, fit_steps=300, progress=False)
    info = samples["info"]
    assert info["converted"] == 2 and info["kept"] == 1
    assert info["fit_joint_error_mm"] < 5.0
    assert samples["image"] == ["Video_files/Subject_1/pour_milk/1/color/color_0000.jpeg"]
    assert np.allclose(samples["joints"][0], joints_cam, atol=0.008)
    assert np.allclose(samples["obj_rot"][0], R, atol=1e-6) and np.allclose(samples["obj_trans"][0], near, atol=1e-6)
    assert np.allclose(objects["milk"][0], v, atol=1e-6)


def test_rigid_motion_moves_the_mesh_rigidly(mano):
    pose, shape, trans, out = _grasp(mano)
    R = axis_angle_to_matrix(torch.tensor([[0.4, -1.1, 2.0]], dtype=torch.float64))
    t = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64)
    motion = RigidMotion(R, t)
    p2, t2 = motion.hand(mano, pose, shape, trans)
    with torch.no_grad():
        moved = mano(p2, shape, t2).vertices[0]
    # Expected: each vertex moved by hand, v -> R v + t, written out per coordinate.
    v = out.vertices[0]
    want = torch.stack([sum(R[0, i, k] * v[:, k] for k in range(3)) + t[0, i] for i in range(3)], 1)
    assert torch.allclose(moved, want, atol=1e-7)
    assert torch.allclose(motion.points(out.vertices), want[None], atol=1e-12)
    assert torch.allclose(motion.directions(out.vertices) + t[:, None], want[None], atol=1e-12)
    # The inverse undoes it, composition chains it: (inverse @ motion) is the identity.
    back = motion.inverse().points(motion.points(out.vertices))
    assert torch.allclose(back, out.vertices, atol=1e-12)
    ident = motion.inverse() @ motion
    assert torch.allclose(ident.R, torch.eye(3, dtype=torch.float64)[None], atol=1e-12)
    assert torch.allclose(ident.t, torch.zeros(1, 3, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="R must"):
        RigidMotion(torch.eye(2), torch.zeros(2))
    with pytest.raises(ValueError, match="t must"):
        RigidMotion(R, torch.zeros(2, 3))
