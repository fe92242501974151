"""``miho evaluate`` at tiny size (untrained tiny HoNet and PiCR given as weight files, 3 GeO
iterations): the rows it writes, resuming, and 2 gloo processes giving the rows of one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from miho import cli
from miho.evaluation import SETTINGS, read_rows, summarise
from miho.nets.honet import build_honet
from miho.nets.picr import build_picr
from miho.train.checkpoints import export_weights, write_card

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    for name, net in (("honet", build_honet("tiny")), ("picr", build_picr("tiny")), ("obman", build_honet("tiny"))):
        export_weights(net, folder / f"{name}.pt", {"config": net.config.to_dict()})
        write_card(folder / f"{name}.pt", {"config": net.config.to_dict()})
    return folder


def _args(nets, out):
    return ["evaluate", "--split", "test-seen", "--grasps", "3", "--views", "1", "--iterations", "3", "--resolution",
            "16", "--batch-size", "2", "--t-vc", "0.3", "--honet", str(nets / "honet.pt"), "--picr",
            str(nets / "picr.pt"), "--obman", str(nets / "obman.pt"), "--out", str(out), "--threads", "1"]  # fmt: skip


def test_rows_summary_and_resume(nets, tmp_path):
    out = tmp_path / "one"
    cli.main(_args(nets, out))
    rows = read_rows(out)
    assert len(rows) == 3 * len(SETTINGS) and {r["setting"] for r in rows} == set(SETTINGS)
    for r in rows:
        if r["setting"] == "truth":
            assert r["HE"] == 0.0 and r["OE"] == 0.0
        else:
            assert r["HE"] > 0.0 and r["OE"] > 0.0  # an untrained HoNet is somewhere else
    coarse = {r["sample"]: r for r in rows if r["setting"] == "honet"}
    hand_mode = {r["sample"]: r for r in rows if r["setting"] == "miho-hand"}
    assert all(hand_mode[i]["OE"] == pytest.approx(coarse[i]["OE"]) for i in coarse)  # hand mode: object stays
    obman = {r["sample"]: r for r in rows if r["setting"] == "obman"}  # other weights, other answers
    assert all(obman[i]["HE"] != pytest.approx(coarse[i]["HE"]) for i in coarse)
    header, table = summarise(rows)
    assert header[:3] == ["setting", "samples", "HE (mm)"] and [t[1] for t in table] == [3] * len(SETTINGS)
    assert (out / "summary.md").read_text().count("\n|") >= 5 and (out / "summary.csv").exists()
    # resume: drop the last sample's rows; a second run recomputes exactly those
    path = out / "rows-0.json"
    kept = [r for r in rows if r["sample"] != 2]
    path.write_text(json.dumps(kept))
    cli.main(_args(nets, out))
    again = read_rows(out)
    assert len(again) == len(rows)
    for a, b in zip(rows, again):
        assert a["sample"] == b["sample"] and a["setting"] == b["setting"]
        assert all(a[k] == pytest.approx(b[k], abs=1e-6) for k in a if k not in ("sample", "setting"))


def test_two_processes_give_the_rows_of_one(nets, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    one = subprocess.run([sys.executable, "-m", "miho.cli", *_args(nets, tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29521", "-m", "miho.cli", *_args(nets, tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "two").glob("rows-*.json")) == ["rows-0.json", "rows-1.json"]
    a, b = read_rows(tmp_path / "one"), read_rows(tmp_path / "two")
    assert [(r["sample"], r["setting"]) for r in a] == [(r["sample"], r["setting"]) for r in b]
    for x, y in zip(a, b):  # the batches differ (samples 0, 1 | 2 against 0, 2 | 1): float32 rounding only
        assert all(x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-4) for k in x if k not in ("sample", "setting"))
    assert (tmp_path / "two" / "summary.md").exists()


def test_bench_pipeline_times_every_stage_within_the_evaluation():
    """``miho bench pipeline`` at tiny size with the committed networks: a row a batch size, every
    stage timed, and the stages' times a sample add up to no more than the whole evaluation's."""
    from miho.bench import bench_pipeline
    from miho.evaluation import STAGES

    rows = bench_pipeline(batches=(1, 2), iterations=2, resolution=16)
    assert [r["batch"] for r in rows] == [1, 2]
    ran = [k for k in STAGES if k != "simulate"]  # SD is not simulated here
    for r in rows:
        assert set(ran) <= set(r) and "simulate" not in r and all(r[k] > 0 for k in ran)
        assert sum(r[k] for k in ran) <= 1 / r["samples_per_s"]
