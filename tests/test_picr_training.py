"""PiCR's data, training loop, checkpoints and DDP at tiny size (SynthHO grasps rendered at 64 px)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from miho.data.synthho import SynthHO
from miho.nets.picr import build_picr
from miho.train.checkpoints import export_weights, load_checkpoint, load_weights
from miho.train.picr import PiCRTask, field_figures, heuristic_fields, predict_fields
from miho.train.picr_data import build_picr_data
from miho.train.trainer import TrainSettings, read_log, train

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    train_data = build_picr_data("train", views=2, size=64, grasps=6, workers=0, progress=False)
    val_data = build_picr_data("val", views=1, size=64, grasps=3, workers=0, progress=False)
    return train_data, val_data


def _task(tiny, seed=0, variant="paper", **kw):
    torch.manual_seed(seed)
    return PiCRTask(build_picr("tiny", variant), tiny[0], tiny[1], **{"max_points": 200, **kw})


def test_data_matches_synthho(tiny):
    data = tiny[0]
    ds = SynthHO("train", views=2, size=64, images=False)
    s = ds[3]
    b = data.batch(torch.tensor([3]))
    n = s["obj_verts"].shape[0]
    assert torch.allclose(b["obj_verts"][0, :n], s["obj_verts"], atol=1e-5)
    assert torch.allclose(b["K"][0], s["K"]) and torch.equal(b["cr"][0, :n], s["cr"])
    assert bool(b["obj_mask"][0, :n].all()) and not bool(b["obj_mask"][0, n:].any())
    noisy = data.batch(torch.tensor([3]), pose="noisy")["obj_verts"][0, :n]
    shift = (noisy - b["obj_verts"][0, :n]).norm(dim=-1).mean()
    assert 0.001 < float(shift) < 0.05  # the fixed coarse pose: about 10 mm away
    assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 64, 64)


@pytest.mark.parametrize("variant", ["paper", "hand_aware"])
def test_resume_equals_uninterrupted(tiny, tmp_path, variant):
    settings = TrainSettings(epochs=2, batch_size=2, steps_per_epoch=3, log_every=1)
    full = _task(tiny, variant=variant)
    train(full, settings, tmp_path / "full", progress=False)
    first = _task(tiny, variant=variant)
    train(first, TrainSettings(**{**settings.__dict__, "epochs": 1}), tmp_path / "cut", progress=False)
    resumed = _task(tiny, seed=123, variant=variant)  # other initial weights: everything must come from the checkpoint
    train(resumed, settings, tmp_path / "cut", resume=True, progress=False)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    log = (tmp_path / "cut" / "log.jsonl").read_text().splitlines()
    assert sum('"kind": "epoch"' in line for line in log) == 2 and (tmp_path / "cut" / "best.pt").exists()


def test_checkpoints_of_another_kind_are_refused(tiny, tmp_path):
    settings = TrainSettings(epochs=1, batch_size=2, steps_per_epoch=1)
    train(_task(tiny), settings, tmp_path, progress=False)
    other = _task(tiny, max_points=100)
    with pytest.raises(ValueError, match="another task"):
        train(other, settings, tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train(_task(tiny), TrainSettings(epochs=1, batch_size=2, steps_per_epoch=1, lr=5e-4), tmp_path, resume=True,
              progress=False)  # fmt: skip
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "broken.pt")
    small = build_picr("small")
    export_weights(_task(tiny).model, tmp_path / "tiny.pt", {"config": build_picr("tiny").config.to_dict()})
    with pytest.raises(ValueError, match="another config"):
        load_weights(small, tmp_path / "tiny.pt", expect={"config": small.config.to_dict()})
    with pytest.raises(ValueError, match="hand_aware: file False, expected True"):  # the other variant
        train(_task(tiny, variant="hand_aware"), settings, tmp_path, resume=True, progress=False)


def test_training_lowers_the_loss(tiny, tmp_path):
    """Overfitting 4 samples without augmentation: the loss of the last 20 steps is at most half the
    first 20 steps'."""
    task = _task(tiny, augment=None)
    sub = tiny[0].subset(range(4))
    task.data = sub
    train(task, TrainSettings(epochs=100, batch_size=2, log_every=1, lr=2e-3), tmp_path, progress=False)
    losses = [r["loss"] for r in read_log(tmp_path, "step")]
    assert len(losses) == 200
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.5 * first, (first, last)


def test_figures_and_heuristic(tiny):
    data = tiny[1]
    h = field_figures(heuristic_fields(data))
    p = field_figures(predict_fields(_task(tiny).model, data))
    for fig in (h, p):
        assert 0 <= fig["precision"] <= 1 and 0 <= fig["recall"] <= 1 and 0 <= fig["cr_accuracy"] <= 1
        assert len(fig["curve"]) == 19 and fig["vertices"] == int(data.obj_count[data.obj_of_grasp[data.grasp]].sum())
    # with the true hand and object, the heuristic is the ground truth itself (up to the float32
    # camera frame against the float64 canonical frame the truth was annotated in: a near-tie of
    # region votes may flip)
    exact = field_figures(heuristic_fields(data, pose="true"))
    assert exact["f1"] == pytest.approx(1.0) and exact["cr_accuracy"] > 0.999
    assert exact["ae_mae"] < 1e-3


def _train_args(run_dir, batch, variant):
    return ["train", "picr", "--config", "tiny", "--variant", variant, "--run-dir", str(run_dir), "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", str(batch), "--views", "2", "--train-grasps", "6",
            "--val-views", "1", "--val-grasps", "3", "--max-points", "200", "--workers", "0",
            "--threads", "1"]  # fmt: skip


@pytest.mark.parametrize("variant", ["paper", "hand_aware"])
def test_ddp_two_processes_equal_one_process_with_the_whole_batch(tiny, tmp_path, variant):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    one = subprocess.run([sys.executable, "-m", "miho.cli", *_train_args(tmp_path / "one", 4, variant)], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29517", "-m", "miho.cli", *_train_args(tmp_path / "two", 2, variant)], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    a = load_checkpoint(tmp_path / "one" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "two" / "last.pt")["model"]
    torch.manual_seed(0)  # the command's initial weights (seed 0)
    start = build_picr("tiny", variant).state_dict()
    moved = max(float((a[k] - v).abs().max()) for k, v in start.items() if v.is_floating_point())
    assert moved > 1e-4  # training changed the weights
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def _true_coarse(data):
    """Coarse poses as HoNet's predictions are stored, holding the truth (and the fixed disturbance)."""
    return {"obj_rot": data.obj_rot.float(), "obj_trans": data.obj_trans.float(), "hand_pose": data.hand_pose,
            "hand_shape": data.hand_shape, "hand_trans": data.hand_trans}  # fmt: skip


def test_stage_two_reads_the_given_coarse_poses(tiny):
    """Coarse poses given per sample (stage 2: HoNet's) replace the disturbances: holding the truth,
    fields and heuristic equal those on the true pose; and a table of the wrong length is refused."""
    data = tiny[1]
    true = _true_coarse(data)
    exact = field_figures(heuristic_fields(data, coarse=true))
    assert exact["f1"] == pytest.approx(1.0) and exact["cr_accuracy"] > 0.999
    for variant in ("paper", "hand_aware"):
        model = _task(tiny, variant=variant).model
        given = predict_fields(model, data, coarse=true)
        want = predict_fields(model, data, pose="true", hand_scale=0.0)
        assert torch.allclose(given["vc"], want["vc"], atol=1e-5) and torch.equal(given["cr"], want["cr"])
    noisy = {**true, "obj_rot": data.obj_rot_noisy.float(), "obj_trans": data.obj_trans_noisy.float()}
    moved = predict_fields(model, data, coarse=noisy)
    assert not torch.allclose(moved["vc"], want["vc"], atol=1e-5)
    with pytest.raises(ValueError, match="coarse"):
        _task(tiny, coarse={k: v[:2] for k, v in _true_coarse(tiny[0]).items()})


def test_stage_two_training_starts_from_stage_one_and_records_both_origins(tiny, tmp_path):
    from miho.train.checkpoints import file_origin, init_weights

    stage1 = _task(tiny, seed=3, variant="hand_aware").model
    export_weights(stage1, tmp_path / "stage1.pt", {"config": stage1.config.to_dict()}, half=False)
    model = build_picr("tiny", "hand_aware")
    origin = {"init": init_weights(model, tmp_path / "stage1.pt"), "honet": file_origin(tmp_path / "stage1.pt")}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), stage1.state_dict().values()))
    task = PiCRTask(model, tiny[0], tiny[1], max_points=200, coarse=_true_coarse(tiny[0]),
                    val_coarse=_true_coarse(tiny[1]), origin=origin)  # fmt: skip
    train(task, TrainSettings(epochs=1, batch_size=2, steps_per_epoch=2), tmp_path / "run", progress=False)
    meta = load_checkpoint(tmp_path / "run" / "last.pt")["meta"]["task"]
    assert meta["stage"] == 2 and meta["init"] == origin["init"] and meta["honet"]["sha256"] == origin["init"]["sha256"]
