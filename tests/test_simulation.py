"""Simulation displacement (ObMan protocol) in PyBullet: known motions, the VHACD cache, the pool."""

import numpy as np
import pytest
import torch

import miho.simulation as S
from miho.mesh import Meshes, box, icosphere

G = 9.8
T = 35 / 240  # simulated time, s


def _ball(radius=0.02):
    v, f = icosphere(radius, 2, dtype=torch.float64)
    return v.numpy(), f.numpy()


def _cup(width=0.05, height=0.05, floor_y=0.0201):
    """An open box (floor + 4 walls, no lid) whose floor is at y = floor_y and whose walls rise
    towards -y: with gravity along +y, a ball of radius 2 cm at the origin rests on its floor."""
    s = width / 2
    top = floor_y - height
    v = np.array([[-s, floor_y, -s], [s, floor_y, -s], [s, floor_y, s], [-s, floor_y, s],
                  [-s, top, -s], [s, top, -s], [s, top, s], [-s, top, s]])  # fmt: skip
    f = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6],
                  [3, 0, 4], [3, 4, 7]])  # fmt: skip
    return v, f


def _far_hand():
    v, f = box((0.05, 0.05, 0.05), divisions=1, dtype=torch.float64)
    return v.numpy() + [1.0, 0.0, 0.0], f.numpy()


def test_free_fall(tmp_path):
    bv, bf = _ball()
    hv, hf = _far_hand()
    sd = S.simulation_displacement(hv[None], hf, [bv], [bf], cache_dir=tmp_path, workers=1)
    assert sd.shape == (1,)
    # 0.5 g t^2 = 104.2 mm; the integrator's discrete steps (semi-implicit Euler: g dt^2 n (n + 1) / 2
    # = 107.2 mm) and pybullet's default damping stay within 5%.
    assert abs(sd[0] - 0.5 * G * T**2 * 1000) < 0.05 * 0.5 * G * T**2 * 1000
    # Gravity along another direction (and given per sample): the same fall, whatever the axis.
    sd2 = S.simulation_displacement([hv, hv], hf, [bv, bv + 0.3], [bf, bf], gravity=[[0, 0, -G], [G, 0, 0]],
                                    cache_dir=tmp_path, workers=1)  # fmt: skip
    assert np.allclose(sd2, sd[0], atol=0.5)


def test_ball_held_in_a_cup(tmp_path):
    bv, bf = _ball()
    cv, cf = _cup()
    sd = S.simulation_displacement(torch.as_tensor(cv)[None], torch.as_tensor(cf), [bv], [bf], cache_dir=tmp_path,
                                   workers=1)  # fmt: skip
    assert sd[0] < 5.0
    # Gravity reversed: the ball leaves through the open top and falls freely.
    up = S.simulation_displacement([cv], cf, [bv], [bf], gravity=(0, -G, 0), cache_dir=tmp_path, workers=1)
    assert up[0] > 90


def test_vhacd_cache_is_reused(tmp_path, monkeypatch, capfd):
    bv, bf = _ball(0.015)
    hv, hf = _far_hand()
    first = S.simulation_displacement([hv], hf, [bv], [bf], cache_dir=tmp_path, workers=1)
    key = S.mesh_key(bv, bf, S.SimSettings())
    assert (tmp_path / f"{key}.obj").is_file() and len(list(tmp_path.iterdir())) == 1  # no temporary left
    assert "Convex Decomposition" not in capfd.readouterr().out  # VHACD's C output kept off stdout

    def no_vhacd(*a, **k):
        raise AssertionError("VHACD ran again")

    monkeypatch.setattr(S, "_vhacd", no_vhacd)
    again = S.simulation_displacement([hv], hf, [bv], [bf], cache_dir=tmp_path, workers=1)
    assert np.array_equal(first, again)
    # Other VHACD settings: another key, so it must run (and here it may not).
    with pytest.raises(AssertionError, match="VHACD ran again"):
        S.simulation_displacement([hv], hf, [bv], [bf], settings=S.SimSettings(vhacd_resolution=50_000),
                                  cache_dir=tmp_path, workers=1)  # fmt: skip


def test_worker_pool_matches_in_process(tmp_path):
    """Two spawned worker processes give the same numbers as one in-process run."""
    bv, bf = _ball()
    cv, cf = _cup()
    hv, hf = _far_hand()
    hands, faces = [cv, hv, cv], [cf, hf, cf]
    objs = [bv, bv, bv * 0.8]  # two distinct objects
    one = S.simulation_displacement(hands, faces, objs, [bf] * 3, cache_dir=tmp_path, workers=1)
    pool = S.simulation_displacement(hands, faces, objs, [bf] * 3, cache_dir=tmp_path, workers=2, progress=False)
    assert np.allclose(one, pool) and one[0] < 5 and one[1] > 90
    assert len(list(tmp_path.glob("*.obj"))) == 2


def test_bad_input(tmp_path):
    bv, bf = _ball()
    hv, hf = _far_hand()
    nan = bv.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        S.simulation_displacement([hv], hf, [nan], [bf], cache_dir=tmp_path, workers=1)
    with pytest.raises(ValueError, match="batch"):
        S.simulation_displacement([hv, hv], hf, [bv], [bf], cache_dir=tmp_path, workers=1)
    with pytest.raises(ValueError, match="gravity"):
        S.simulation_displacement([hv], hf, [bv], [bf], gravity=(0, 1), cache_dir=tmp_path, workers=1)
    with pytest.raises(ValueError, match="outside"):
        S.simulation_displacement([hv], hf + 100, [bv], [bf], cache_dir=tmp_path, workers=1)


def test_centre_of_mass():
    v, f = box((0.02, 0.04, 0.06), divisions=2, dtype=torch.float64)
    c = np.array([0.1, -0.2, 0.3])
    assert np.allclose(S.centre_of_mass(v.numpy() + c, f.numpy()), c, atol=1e-12)


def test_evaluate_with_simulation(tmp_path):
    """evaluate(simulate=True) adds SD for the closed hand (here a cup-shaped closed mesh is not
    needed: any closed surface works; a box far away lets the object fall freely)."""
    from miho.metrics import evaluate

    bv, bf = _ball()
    hv, hf = box((0.05, 0.05, 0.05), divisions=2)
    hv = hv + torch.tensor([0.0, -0.1, 0.0])  # above the ball (gravity +y pulls it away)
    tip = torch.zeros(len(hv), dtype=torch.bool)
    tip[:4] = True
    objs = Meshes.from_list([(bv, bf)])
    table = evaluate(hv[None], objs, closed_hand=(hv[None], hf), tip_mask=tip, simulate=True, resolution=24,
                     sim_options={"cache_dir": tmp_path, "workers": 1})  # fmt: skip
    assert list(table.columns) == ["PD", "SIV", "DD", "SD"]
    assert table["PD"].item() == 0 and table["SIV"].item() == 0
    assert abs(table["SD"].item() - 0.5 * G * T**2 * 1000) < 6
