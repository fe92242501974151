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
    cols = list(table.columns)
    assert cols[:4] == ["PD", "SIV", "DD", "SD"] and set(cols[4:]) <= {"SD std"}  # the spread, where reported
    assert table["PD"].item() == 0 and table["SIV"].item() == 0
    assert abs(table["SD"].item() - 0.5 * G * T**2 * 1000) < 6


def test_jittered_sd_is_the_mean_of_runs_on_moved_hands(tmp_path):
    """SD with jitter is the mean of single runs on the hand moved by each seeded offset;
    the same seed gives the same runs; jitter off gives the one run of the unmoved hand."""
    bv, bf = _ball()
    cv, cf = _cup(floor_y=0.0203)
    hv, hf = _far_hand()
    hands, faces, objs = [cv, hv], [cf, hf], [bv, bv]
    settings = S.SimSettings(jitter_runs=3, jitter_seed=4)
    off = S.jitter_offsets(settings)
    assert off.shape == (3, 3) and (np.linalg.norm(off, axis=1) <= 1e-4).all() and len(np.unique(off[:, 0])) == 3
    assert np.array_equal(off, S.jitter_offsets(S.SimSettings(jitter_runs=3, jitter_seed=4)))
    assert not np.allclose(off, S.jitter_offsets(S.SimSettings(jitter_runs=3, jitter_seed=5)))
    runs = S.simulation_displacement(hands, faces, objs, [bf] * 2, settings=settings, cache_dir=tmp_path, workers=1,
                                     per_run=True)  # fmt: skip
    assert runs.shape == (2, 3)
    again = S.simulation_displacement(hands, faces, objs, [bf] * 2, settings=settings, cache_dir=tmp_path, workers=2,
                                      progress=False, per_run=True)  # fmt: skip
    assert np.array_equal(runs, again)  # seeded: repeatable, also across processes
    mean = S.simulation_displacement(hands, faces, objs, [bf] * 2, settings=settings, cache_dir=tmp_path, workers=1)
    single = S.SimSettings(jitter_runs=0)
    one_by_one = np.array([
        [S.simulation_displacement([h + o], f, [b], [bf], settings=single, cache_dir=tmp_path, workers=1)[0]
         for o in off] for h, f, b in zip(hands, faces, objs)
    ])  # fmt: skip
    assert np.allclose(runs, one_by_one, atol=1e-9) and np.allclose(mean, one_by_one.mean(1), atol=1e-9)
    # Off: one run on the unmoved hand, as simulate_one gives it (the former single value).
    off_runs = S.simulation_displacement(hands, faces, objs, [bf] * 2, settings=single, cache_dir=tmp_path, workers=1,
                                         per_run=True)  # fmt: skip
    path = S.decompose(bv, bf, single, tmp_path)
    direct = [S.simulate_one(h, f, path, S.centre_of_mass(bv, bf), np.array(single.gravity), single) for h, f in
              zip(hands, faces)]  # fmt: skip
    assert off_runs.shape == (2, 1) and np.array_equal(off_runs[:, 0], direct)
    assert np.array_equal(S.jitter_offsets(single), np.zeros((1, 3)))
    assert S.SimSettings().jitter_runs == 5  # on by default
    with pytest.raises(ValueError, match="jitter_runs"):
        S.SimSettings(jitter_runs=-1)
    with pytest.raises(ValueError, match="jitter_radius"):
        S.SimSettings(jitter_radius=float("nan"))
    with pytest.raises(ValueError, match="centre"):
        S.SimSettings(centre="middle")


def test_obman_preset_is_the_published_protocol(tmp_path, monkeypatch):
    """OBMAN: one unjittered run, the body at the vertex mean, obman_train's VHACD options
    (passed to pybullet as they are), the protocol's physics."""
    from miho.data.objects import revolve

    o = S.OBMAN
    assert (o.jitter_runs, o.centre, o.gravity, o.time_step, o.steps, o.solver_iterations) == (
        0, "vertex_mean", (0.0, 9.8, 0.0), 1 / 240, 35, 150)  # fmt: skip
    assert (o.hand_friction, o.object_friction, o.hand_restitution, o.object_restitution, o.object_mass) == (
        3.0, 3.0, 0.0, 0.5, 1.0)  # fmt: skip
    published = dict(resolution=1000, concavity=0.001, planeDownsampling=4, convexhullDownsampling=4, alpha=0.05,
                     beta=0.0, pca=0, mode=0, maxNumVerticesPerCH=64, minVolumePerCH=0.0001)  # fmt: skip
    assert o.vhacd_options() == published
    # A cone: its vertices spread along the slant, its mass sits near the base: two different centres.
    v, f = revolve([(0, 0), (0.04, 0), (0, 0.10)])
    v, f = v.double().numpy(), f.numpy()
    mean, solid = v.mean(0), S.centre_of_mass(v, f)
    assert solid[2] == pytest.approx(0.025, abs=1e-3) and abs(mean[2] - solid[2]) > 5e-3  # h / 4 for a solid cone
    hv, hf = _far_hand()
    for settings, start in ((o, mean), (S.SimSettings(), solid)):
        trace = S.simulation_trace(hv, hf, v, f, settings=settings, cache_dir=tmp_path)
        assert np.allclose(trace[0], start, atol=1e-9)  # SD measures this point's motion
        assert np.linalg.norm(trace[-1] - trace[0]) * 1000 == pytest.approx(0.5 * G * T**2 * 1000, rel=0.05)
    calls = []

    class FakePybullet:
        DIRECT = 0

        def connect(self, mode):
            return 0

        def disconnect(self, cid):
            pass

        def vhacd(self, src, dst, log, physicsClientId, **options):
            calls.append(options)
            with open(dst, "w") as fh:
                fh.write("o hull\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\n")

    monkeypatch.setattr(S, "_pybullet", FakePybullet)
    S.decompose(v * 1.5, f, o, tmp_path / "fake")
    assert calls == [published]


def test_shipped_asset_comes_first(tmp_path, monkeypatch):
    """build_vhacd_asset writes an asset; decompose takes a shipped entry before the cache and
    never runs VHACD for it."""
    bv, bf = _ball(0.018)
    settings = S.SimSettings(jitter_runs=0)
    asset = tmp_path / "asset.npz"
    index = S.build_vhacd_asset({"ball": (bv, bf)}, {"plain": settings}, path=asset, workers=1, recompute=True)
    key = S.mesh_key(bv, bf, settings)
    assert index == {key: {"object": "ball", "settings": "plain"}}
    shipped = S.shipped_decompositions(asset)
    assert set(shipped) == {key} and shipped[key].count(b"\nv ") >= 4

    def no_vhacd(*a, **k):
        raise AssertionError("VHACD ran")

    monkeypatch.setattr(S, "_vhacd", no_vhacd)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{key}.obj").write_bytes(b"o stale\n")  # a cached file that differs: the shipped one wins
    path = S.decompose(bv, bf, settings, cache, shipped=asset)
    assert open(path, "rb").read() == shipped[key]
    assert sorted(p.name for p in cache.iterdir()) == [f"{key}.obj"]  # no temporary left
    with pytest.raises(AssertionError, match="VHACD ran"):  # without the asset: computed
        S.decompose(bv, bf, settings, tmp_path / "empty", shipped=None)
    with pytest.raises(ValueError, match="empty"):
        S.build_vhacd_asset({}, path=tmp_path / "none.npz")
