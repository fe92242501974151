"""HoNet: its rotation and position outputs against hand-worked values, its losses against
hand-computed ones, the hand it poses, batch independence, bad input, and its training at tiny
size (learning, exact resume, 2 gloo processes against one)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from miho.hand import load_hand
from miho.nets.honet import HoNet, HoNetConfig, build_honet, honet_card, load_honet, rotation_6d_to_matrix
from miho.rotations import axis_angle_to_matrix
from miho.train.checkpoints import load_checkpoint
from miho.train.honet import HoNetTask, check_figures, honet_figures, predict_honet
from miho.train.losses import HoNetLossWeights, honet_loss
from miho.train.picr_data import build_picr_data
from miho.train.trainer import TrainSettings, read_log, train

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hand():
    return load_hand()


@pytest.fixture(scope="module")
def tiny_data():
    return build_picr_data("train", views=2, size=64, grasps=6, workers=0, progress=False)


def _camera(S: float, B: int = 1) -> torch.Tensor:
    return torch.tensor([[2.5 * S, 0.0, S / 2], [0.0, 2.5 * S, S / 2], [0.0, 0.0, 1.0]]).expand(B, 3, 3)


def test_rotation_6d_gives_the_rotation_whose_columns_it_holds():
    R = axis_angle_to_matrix(torch.tensor([[0.3, -1.2, 0.5], [2.0, 0.1, -0.4]]))
    six = torch.cat((R[..., 0], R[..., 1]), -1)
    assert torch.allclose(rotation_6d_to_matrix(six), R, atol=1e-6)
    # any two independent vectors: Gram-Schmidt by hand for (2, 0, 0) and (1, 1, 0)
    got = rotation_6d_to_matrix(torch.tensor([[2.0, 0.0, 0.0, 1.0, 1.0, 0.0]]))[0]
    assert torch.allclose(got, torch.eye(3), atol=1e-7)
    rand = rotation_6d_to_matrix(torch.randn(50, 6, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(rand.transpose(1, 2) @ rand, torch.eye(3).expand(50, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rand), torch.ones(50), atol=1e-5)


def test_position_is_the_point_that_projects_to_the_offset_at_the_scale_depth():
    """Hand-worked: S = 64, K with f = 160, centre (32, 32); the image then zoomed by 2 about pixel 0
    and shifted by (4, -2) (P = A K). Outputs (o_u, o_v, t) = (0.25, -0.5, log 2): u = 32 * 1.25 = 40,
    v = 32 * 0.5 = 16, s = 64 scale_ref * 2, z = f' / s = 320 / (128 scale_ref)."""
    net = HoNet(HoNetConfig(name="t", image_size=64, width=4, hidden=(8,)))
    K = _camera(64)
    A = torch.tensor([[[2.0, 0.0, 4.0], [0.0, 2.0, -2.0], [0.0, 0.0, 1.0]]])
    P = A @ K
    raw = torch.tensor([[0.25, -0.5, math.log(2.0)]])
    point = net._position(raw, P)[0]
    z = 320.0 / (128.0 * net.config.scale_ref)
    # invert by hand: u = 2 (160 x / z + 32) + 4 = 40 -> x = (18 - 32) z / 160; v = 2 (160 y / z + 32) - 2 = 16
    expected = torch.tensor([(18.0 - 32.0) * z / 160.0, (9.0 - 32.0) * z / 160.0, z])
    assert torch.allclose(point, expected, atol=1e-6)
    proj = P[0] @ point
    assert torch.allclose(proj[:2] / proj[2], torch.tensor([40.0, 16.0]), atol=1e-4)


def test_loss_equals_hand_computed_values_and_ignores_padding():
    joints = torch.zeros(2, 2, 3)
    joints_true = torch.tensor([[[0.03, 0.0, 0.0], [0.0, 0.04, 0.0]], [[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]]])
    verts = torch.zeros(2, 3, 3)
    verts_true = torch.zeros(2, 3, 3)
    verts_true[0, 0, 2] = 0.02  # sample 0: vertices 0, 1 real
    verts_true[1, :, 0] = 0.01  # sample 1: all three real
    mask = torch.tensor([[True, True, False], [True, True, True]])
    shape = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    pca = torch.tensor([[3.0], [1.0]])
    total, terms = honet_loss(joints, joints_true, verts, verts_true, mask, shape, pca)
    # joints: sample 0 (9e-4 + 16e-4) / 2 = 12.5e-4, sample 1 (0 + 1e-4) / 2 = 0.5e-4 -> 6.5e-4
    assert float(terms["joints"]) == pytest.approx(6.5e-4)
    # object: sample 0 (4e-4 + 0) / 2 = 2e-4, sample 1 1e-4 -> 1.5e-4
    assert float(terms["obj_verts"]) == pytest.approx(1.5e-4)
    assert float(terms["shape"]) == pytest.approx(2.5) and float(terms["pose"]) == pytest.approx(5.0)
    w = HoNetLossWeights()
    assert float(total) == pytest.approx(w.joints * 6.5e-4 + w.obj_verts * 1.5e-4 + w.shape * 2.5 + w.pose * 5.0)
    verts_true[0, 2] = 5.0  # a padded vertex far away changes nothing
    again, _ = honet_loss(joints, joints_true, verts, verts_true, mask, shape, pca)
    assert float(again) == pytest.approx(float(total))
    # the parameter terms: identity against a quarter turn about z, ||I - Rz||_F^2 = 4 (sample 0), 0 (sample 1)
    quarter = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2], [0.0, 0.0, 0.0]]))
    truth = {"rot": (torch.eye(3).expand(2, 3, 3), quarter), "pca": torch.tensor([[1.0], [1.0]]),
             "shape": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}  # fmt: skip
    params = HoNetLossWeights(rot=1.0, pca_fit=1.0, shape_fit=1.0)
    with_params, terms = honet_loss(joints, joints_true, verts, verts_true, mask, shape, pca, params, truth)
    assert float(terms["rot"]) == pytest.approx(2.0, abs=1e-6)  # (4 + 0) / 2
    assert float(terms["pca_fit"]) == pytest.approx(2.0) and float(terms["shape_fit"]) == pytest.approx(2.5)
    assert float(with_params) == pytest.approx(float(total) + 2.0 + 2.0 + 2.5, abs=1e-6)
    with pytest.raises(ValueError, match="truth"):
        honet_loss(joints, joints_true, verts, verts_true, mask, shape, pca, params)
    # ObMan*'s contact terms: means over the samples, weighted
    contact = (torch.tensor([0.01, 0.03]), torch.tensor([0.2, 0.4]))
    obman = HoNetLossWeights(attraction=2.0, repulsion=3.0)
    with_contact, terms = honet_loss(joints, joints_true, verts, verts_true, mask, shape, pca, obman, contact=contact)
    assert float(terms["attraction"]) == pytest.approx(0.02) and float(terms["repulsion"]) == pytest.approx(0.3)
    assert float(with_contact) == pytest.approx(float(total) + 2.0 * 0.02 + 3.0 * 0.3, abs=1e-6)
    with pytest.raises(ValueError, match="contact"):
        honet_loss(joints, joints_true, verts, verts_true, mask, shape, pca, obman)


def test_predicted_hand_has_its_wrist_at_the_root_and_params_agree(hand):
    torch.manual_seed(0)
    net = build_honet("tiny")
    out = net(torch.rand(3, 3, 64, 64), _camera(64, 3))
    posed = net.hand(hand, out)
    assert torch.allclose(posed.joints[:, 0], out.hand_root, atol=1e-6)
    assert float(out.hand_shape.detach().abs().max()) < net.config.shape_bound  # Anny's coefficients live in [-1, 1]
    again = hand(*net.hand_params(hand, out))
    assert torch.allclose(again.vertices, posed.vertices, atol=1e-5)
    assert torch.allclose(net.pose_pca.encode(net.hand_params(hand, out)[0][:, 1:]), out.hand_pca, atol=1e-4)
    canonical = torch.randn(3, 10, 3) * 0.05
    verts = net.object_verts(out, canonical)
    assert torch.allclose((verts - out.obj_trans[:, None]) @ out.obj_rot, canonical, atol=1e-6)


def test_prediction_is_batch_independent_and_deterministic():
    torch.manual_seed(0)
    net = build_honet("tiny").eval()
    image = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole, alone, again = net(image, _camera(64, 4)), net(image[2:3], _camera(64, 1)), net(image, _camera(64, 4))
    for k in ("hand_rot", "hand_pca", "hand_shape", "hand_root", "obj_rot", "obj_trans"):
        assert torch.allclose(getattr(whole, k)[2:3], getattr(alone, k), atol=1e-5), k
        assert torch.equal(getattr(whole, k), getattr(again, k)), k


def test_bad_input_is_refused(hand, tmp_path):
    net = build_honet("tiny")
    with pytest.raises(ValueError, match="image"):
        net(torch.rand(2, 3, 128, 128), _camera(64, 2))
    with pytest.raises(ValueError, match="P"):
        net(torch.rand(2, 3, 64, 64), _camera(64, 3))
    with pytest.raises(ValueError, match="NaN|finite"):
        net(torch.full((1, 3, 64, 64), float("nan")), _camera(64))
    other = HoNet(HoNetConfig(name="t", image_size=64, width=4, hidden=(8,), num_shape=10))
    out = other(torch.rand(1, 3, 64, 64), _camera(64))
    with pytest.raises(ValueError, match="10"):
        other.hand(hand, out)
    with pytest.raises(ValueError, match="unknown HoNet configuration fields"):
        HoNetConfig.from_dict({"name": "x", "depth": 3})
    with pytest.raises(ValueError, match="divisible by 32"):
        HoNetConfig(image_size=100)
    with pytest.raises(ValueError, match="shape_bound"):
        HoNetConfig(shape_bound=0.0)
    with pytest.raises(ValueError, match="no HoNet weights"):
        load_honet(path=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="config must be one of"):
        build_honet("huge")


def _task(data, seed=0, **kw):
    torch.manual_seed(seed)
    return HoNetTask(build_honet("tiny"), data, data.subset(range(4)), **kw)


def test_training_lowers_the_loss(tiny_data, tmp_path):
    """Overfitting 4 samples without augmentation: the loss of the last 20 steps is at most a
    quarter of the first 20 steps'."""
    task = _task(tiny_data, augment=None)
    task.data = tiny_data.subset(range(4))
    train(task, TrainSettings(epochs=100, batch_size=2, log_every=1, lr=2e-3), tmp_path, progress=False)
    losses = [r["loss"] for r in read_log(tmp_path, "step")]
    assert len(losses) == 200
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.25 * first, (first, last)
    fig = honet_figures(predict_honet(task.model, task.data), task.data)
    assert fig["samples"] == 4 and 0 < fig["hand_mpjpe"] < 100 and 0 < fig["obj_mpvpe"] < 100


def test_obman_star_terms_train_and_a_fine_tuned_run_records_its_start(tiny_data, tmp_path):
    """ObMan*: HoNet started from saved weights with the contact terms on; the step log carries both
    terms, the checkpoint records the starting weights' digest, and resuming from other starting
    weights is refused."""
    from miho.train.checkpoints import export_weights, init_weights

    torch.manual_seed(1)
    saved = build_honet("tiny")
    start = tmp_path / "start.pt"
    export_weights(saved, start, {"config": saved.config.to_dict()}, half=False)
    torch.manual_seed(2)
    model = build_honet("tiny")
    origin = init_weights(model, start)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), saved.state_dict().values()))
    weights = HoNetLossWeights(attraction=1e-3, repulsion=1e-3)
    task = HoNetTask(model, tiny_data, None, weights=weights, init=origin)
    settings = TrainSettings(epochs=1, batch_size=2, steps_per_epoch=2, log_every=1)
    train(task, settings, tmp_path / "run", progress=False)
    steps = read_log(tmp_path / "run", "step")
    assert len(steps) == 2 and all("attraction" in r and "repulsion" in r for r in steps)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["meta"]["task"]["init"]["sha256"] == origin["sha256"]
    other = HoNetTask(build_honet("tiny"), tiny_data, None, weights=weights,
                      init={**origin, "sha256": "0" * 64})  # fmt: skip
    with pytest.raises(ValueError, match="init"):
        train(other, TrainSettings(epochs=2, batch_size=2, steps_per_epoch=2), tmp_path / "run", resume=True,
              progress=False)  # fmt: skip


def test_resume_equals_uninterrupted(tiny_data, tmp_path):
    settings = TrainSettings(epochs=2, batch_size=2, steps_per_epoch=3, log_every=1)
    full = _task(tiny_data)
    train(full, settings, tmp_path / "full", progress=False)
    first = _task(tiny_data)
    train(first, TrainSettings(**{**settings.__dict__, "epochs": 1}), tmp_path / "cut", progress=False)
    resumed = _task(tiny_data, seed=123)
    train(resumed, settings, tmp_path / "cut", resume=True, progress=False)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="another task"):  # a PiCR-style change of the task: other augmentation
        train(_task(tiny_data, augment=None), settings, tmp_path / "cut", resume=True, progress=False)


def _train_args(run_dir, batch):
    return ["train", "honet", "--config", "tiny", "--run-dir", str(run_dir), "--epochs", "1", "--steps-per-epoch",
            "2", "--batch-size", str(batch), "--views", "2", "--train-grasps", "6", "--val-views", "1",
            "--val-grasps", "3", "--workers", "0", "--threads", "1"]  # fmt: skip


def test_ddp_two_processes_equal_one_process_with_the_whole_batch(tiny_data, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    one = subprocess.run([sys.executable, "-m", "miho.cli", *_train_args(tmp_path / "one", 4)], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29519", "-m", "miho.cli", *_train_args(tmp_path / "two", 2)], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    a = load_checkpoint(tmp_path / "one" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "two" / "last.pt")["model"]
    torch.manual_seed(0)  # the command's initial weights (seed 0)
    start = build_honet("tiny").state_dict()
    moved = max(float((a[k] - v).abs().max()) for k, v in start.items() if v.is_floating_point())
    assert moved > 1e-4
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


@pytest.mark.parametrize("variant", ["honet", "obman"])
def test_committed_model_reproduces_its_check_figures(variant):
    """The committed HoNet and ObMan*, re-evaluated on their cards' check subset (the first 24
    grasps of ``val``, one view each), give the cards' figures to 0.05 mm."""
    card = honet_card(variant=variant)
    model = load_honet(variant=variant)
    assert not model.training and model.config == HoNetConfig.from_dict(card["config"])
    got = check_figures(model)
    assert got["samples"] == card["check"]["samples"]
    for k in ("hand_mpjpe", "hand_mpvpe", "hand_mpjpe_rr", "obj_mpvpe"):
        assert got[k] == pytest.approx(card["check"][k], abs=0.05), k
    if variant == "obman":  # trained with the contact terms, from the committed HoNet
        assert card["task"]["weights"]["attraction"] > 0 and card["task"]["weights"]["repulsion"] > 0
        assert card["task"]["init"]["path"].endswith("honet_small.pt")
