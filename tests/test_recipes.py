"""Training recipes with PySlowFast's keys: gradient clipping, mixup / CutMix, RandAugment and random
erasing, activation checkpointing, multigrid. Each test checks the recipe's effect, not only that it runs."""

import pytest
import torch
import torch.nn as nn

from vov3d.config import get_cfg
from vov3d.config.merge import set_key
from vov3d.engine import solver

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(*opts):
    cfg = get_cfg()
    for key, value in zip(opts[::2], opts[1::2]):
        set_key(cfg, key, value, "test")
    return cfg


# ------------------------------------------------------------------------------------------------ #
# Gradient clipping
# ------------------------------------------------------------------------------------------------ #


def _model_with_grads(scale, scaler=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(4, 6)).pow(2).sum() * scale
    (scaler.scale(loss) if scaler is not None else loss).backward()
    return model, opt


def _norm(model):
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item()


def test_clip_grad_l2norm_is_amp_aware():
    ref, _ = _model_with_grads(100.0)
    true_norm = _norm(ref)
    assert true_norm > 2.0
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    model, opt = _model_with_grads(100.0, scaler)
    assert _norm(model) == pytest.approx(1024.0 * true_norm, rel=1e-4)  # loss-scaled gradients
    cfg = _cfg("SOLVER.CLIP_GRAD_L2NORM", "2.0")
    before = solver.clip_gradients(cfg, opt, scaler)
    assert before.item() == pytest.approx(true_norm, rel=1e-4)  # measured on unscaled gradients
    assert _norm(model) == pytest.approx(2.0, rel=1e-4)  # clipped norm of the true gradients
    w = model[0].weight.detach().clone()
    g = model[0].weight.grad.clone()
    scaler.step(opt)  # must not unscale a second time
    assert torch.allclose(model[0].weight, w - 0.1 * g)


def test_clip_grad_value_and_off():
    model, opt = _model_with_grads(100.0)
    assert solver.clip_gradients(_cfg(), opt) is None  # default: off, gradients untouched
    assert max(p.grad.abs().max().item() for p in model.parameters()) > 0.5
    solver.clip_gradients(_cfg("SOLVER.CLIP_GRAD_VAL", "0.5", "SOLVER.CLIP_GRAD_L2NORM", "1e-6"), opt)
    # VAL wins over L2NORM, as in PySlowFast: elements clamped, the norm stays above 1e-6.
    assert max(p.grad.abs().max().item() for p in model.parameters()) == pytest.approx(0.5)
    assert _norm(model) > 0.5


def test_clip_keys_load_from_pyslowfast_yaml(tmp_path):
    from vov3d.config.load import load_config
    from vov3d.config.merge import ConfigError

    y = tmp_path / "c.yaml"
    y.write_text("SOLVER:\n  CLIP_GRAD_L2NORM: 1\n  CLIP_GRAD_VAL: null\n")
    cfg = load_config(str(y))
    assert cfg.SOLVER.CLIP_GRAD_L2NORM == 1.0 and cfg.SOLVER.CLIP_GRAD_VAL is None
    with pytest.raises(ConfigError, match="SOLVER.CLIP_GRAD_VAL"):
        load_config(str(y), opts=["SOLVER.CLIP_GRAD_VAL", "big"])
    with pytest.raises(ConfigError, match="SOLVER.CLIP_GRAD_L2NORM"):
        load_config(str(y), opts=["SOLVER.CLIP_GRAD_L2NORM", "-1"])


# ------------------------------------------------------------------------------------------------ #
# Mixup / CutMix
# ------------------------------------------------------------------------------------------------ #


def _clips(n=4, t=3, s=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, t, s, s, generator=g), torch.tensor([0, 2, 1, 4])[:n]


def test_mixup_blends_clips_and_targets_sum_to_one():
    import random

    from vov3d.datasets.mixup import MixUp

    x, y = _clips()
    m = MixUp(5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1)
    lam, cut = m.draw(random.Random(7))
    assert not cut and 0.0 < lam < 1.0
    mixed, t = m(x.clone(), y, random.Random(7))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0), atol=1e-6)
    assert torch.allclose(t.sum(1), torch.ones(4))
    off = 0.1 / 5
    for i in range(4):  # each row: lam on its own label, 1 - lam on its mirror's, smoothing elsewhere
        j = 3 - i
        assert t[i, y[i]].item() == pytest.approx(lam * (0.9 + off) + (1 - lam) * off, abs=1e-6)
        assert t[i, y[j]].item() == pytest.approx((1 - lam) * (0.9 + off) + lam * off, abs=1e-6)


def test_cutmix_pastes_one_box_for_all_frames_and_weights_by_area():
    import random

    from vov3d.datasets.mixup import MixUp

    x, y = _clips()
    m = MixUp(5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    for seed in range(20):
        mixed, t = m(x.clone(), y, random.Random(seed))
        pasted = (mixed != x).any(dim=1)  # (N, T, H, W): where another clip was pasted
        area = pasted[0, 0].float().mean().item()
        if area == 0.0:
            continue
        assert all(torch.equal(pasted[:, k], pasted[:, 0]) for k in range(x.shape[2]))  # same box every frame
        mask = pasted.unsqueeze(1).expand_as(x)
        assert torch.equal(mixed[mask], x.flip(0)[mask]) and torch.equal(mixed[~mask], x[~mask])
        assert t[0, y[0]].item() == pytest.approx(1.0 - area, abs=1e-6)
        assert t[0, y[3]].item() == pytest.approx(area, abs=1e-6)
        assert torch.allclose(t.sum(1), torch.ones(4))
        return
    pytest.fail("no CutMix box in 20 draws")


def test_mixup_switch_prob_and_prob():
    import random

    from vov3d.datasets.mixup import MixUp

    rng = random.Random(0)
    both = MixUp(5, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.25)
    cut = sum(both.draw(rng)[1] for _ in range(2000)) / 2000
    assert 0.2 < cut < 0.3
    never = MixUp(5, mix_prob=0.0)
    x, y = _clips()
    mixed, t = never(x.clone(), y, rng)
    assert torch.equal(mixed, x) and torch.allclose(t.max(1).values, torch.full((4,), 0.9 + 0.1 / 5))


# ------------------------------------------------------------------------------------------------ #
# RandAugment and random erasing
# ------------------------------------------------------------------------------------------------ #


def _frames(t=3, h=40, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(t, 3, 6, 8, generator=g)  # smooth frames: interpolation differences stay small
    return (torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear") * 255).round().to(torch.uint8)


def test_rand_augment_same_draw_every_frame_and_per_sample():
    import random

    from vov3d.datasets.augment import parse_rand_augment

    ra = parse_rand_augment("rand-m9-n3-mstd0.5-inc1")
    assert ra.num_ops == 3 and ra.magnitude == 9.0 and ra.magnitude_std == 0.5 and ra.ops[4] == "PosterizeIncreasing"
    clip = _frames()
    changed = 0
    for seed in range(6):
        out = ra(clip, random.Random(seed))
        assert out.dtype == torch.uint8 and out.shape == clip.shape
        assert torch.equal(out, ra(clip, random.Random(seed)))  # deterministic per sample stream
        # Each frame alone, with the same stream: what it got inside the clip (one draw for all frames).
        for k in range(clip.shape[0]):
            assert torch.equal(out[k : k + 1], ra(clip[k : k + 1], random.Random(seed)))
        changed += int(not torch.equal(out, clip))
    assert changed >= 3
    with pytest.raises(ValueError, match="AUG.AA_TYPE"):
        parse_rand_augment("v0")


def test_rand_augment_geometry_matches_pil():
    import numpy as np
    from PIL import Image

    from vov3d.datasets import augment

    img = _frames(t=1, h=48, w=64, seed=3)
    pil = Image.fromarray(img[0].permute(1, 2, 0).numpy())

    def diff(ours, theirs):
        return (ours[0].int() - torch.from_numpy(np.array(theirs)).permute(2, 0, 1).int()).abs().float()

    d = diff(augment.affine(img, augment._rotate_matrix(20, 48, 64), "nearest"),
             pil.rotate(20, resample=Image.NEAREST, fillcolor=(128, 128, 128)))
    assert (d > 2).float().mean() < 0.005
    d = diff(augment.affine(img, (1, 0.2, 0, 0, 1, 0), "bilinear"),
             pil.transform(pil.size, Image.AFFINE, (1, 0.2, 0, 0, 1, 0), resample=Image.BILINEAR,
                           fillcolor=(128, 128, 128)))
    assert d.mean() < 1.0 and (d > 2).float().mean() < 0.03  # differences only along the fill border


def test_random_erasing_one_box_through_all_frames():
    import random

    from vov3d.datasets.augment import RandomErasing

    clip = torch.full((3, 4, 32, 32), 7.0)
    erased = 0
    for seed in range(10):
        out = RandomErasing(probability=0.7, mode="pixel", max_count=2)(clip.clone(), random.Random(seed))
        hit = (out != 7.0).any(dim=0)  # (T, H, W)
        assert all(torch.equal(hit[k], hit[0]) for k in range(4))
        frac = hit[0].float().mean().item()
        assert frac == 0.0 or 0.015 < frac <= 1 / 3 + 0.02
        erased += frac > 0
        out2 = RandomErasing(probability=0.7, mode="pixel", max_count=2)(clip.clone(), random.Random(seed))
        assert torch.equal(out, out2)
    assert 4 <= erased <= 10
    const = RandomErasing(probability=1.0, mode="const")(clip.clone(), random.Random(0))
    assert set(const.unique().tolist()) == {0.0, 7.0}


def test_train_transform_with_aug_is_deterministic_per_sample():
    from vov3d.datasets.sampling import SampleIndex, sample_rng
    from vov3d.datasets.transforms import ClipTransform

    cfg = _cfg("AUG.ENABLE", "True", "AUG.RE_PROB", "1.0", "DATA.TRAIN_CROP_SIZE", "32",
               "DATA.TRAIN_JITTER_SCALES", "[32, 40]")
    plain = ClipTransform(_cfg("DATA.TRAIN_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]"))
    tr = ClipTransform(cfg)
    frames = _frames(t=2, h=40, w=48).permute(0, 2, 3, 1).contiguous()  # decoder layout (T, H, W, 3)
    a = tr.train(frames, sample_rng(SampleIndex(5, 2, 9)))
    b = tr.train(frames, sample_rng(SampleIndex(5, 2, 9)))
    c = tr.train(frames, sample_rng(SampleIndex(5, 3, 9)))
    ref = plain.train(frames, sample_rng(SampleIndex(5, 2, 9)))
    assert a.shape == (3, 2, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, ref)


# ------------------------------------------------------------------------------------------------ #
# Activation checkpointing
# ------------------------------------------------------------------------------------------------ #


@pytest.mark.parametrize("name,opts", [
    ("VoV3D", ("VOV3D.INNER_CH", "8")),
    ("X3D", ("X3D.DIM_C5", "32")),
    ("ResNet3D", ("RESNET3D.ARCH", "r3d", "RESNET.DEPTH", "18", "RESNET.WIDTH_PER_GROUP", "8")),
    ("P3D", ("P3D.DEPTH", "63", "RESNET.WIDTH_PER_GROUP", "8", "DATA.NUM_FRAMES", "16")),
])
def test_activation_checkpointing_gives_identical_gradients_and_bn_stats(name, opts):
    from vov3d.models import build_model

    arch = {"VoV3D": "vov3d", "X3D": "x3d", "ResNet3D": "resnet3d", "P3D": "p3d"}[name]
    base = ("NUM_GPUS", "0", "MODEL.ARCH", arch, "MODEL.MODEL_NAME", name, "MODEL.NUM_CLASSES", "5",
            "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32") + opts
    grads, stats = [], []
    for ckpt in ("False", "True"):
        torch.manual_seed(0)
        model = build_model(_cfg(*base, "MODEL.ACT_CHECKPOINT", ckpt)).train()
        frames = int(dict(zip(base[::2], base[1::2]))["DATA.NUM_FRAMES"])
        x = torch.randn(2, 3, frames, 32, 32, generator=torch.Generator().manual_seed(1))
        model([x]).logsumexp(1).sum().backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
        stats.append({k: v for k, v in model.state_dict().items() if "running" in k or "num_batches" in k})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6), k
    for k in stats[0]:  # running statistics updated once, not again by the recomputation
        assert torch.allclose(stats[0][k].float(), stats[1][k].float(), rtol=1e-5, atol=1e-7), k


def test_activation_checkpointing_recomputes_blocks():
    from vov3d.models import build_model
    from vov3d.models.stages import set_activation_checkpointing

    torch.manual_seed(0)
    model = build_model(_cfg("NUM_GPUS", "0", "MODEL.ARCH", "x3d", "MODEL.MODEL_NAME", "X3D", "MODEL.NUM_CLASSES",
                             "5", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "X3D.DIM_C5", "32"))
    calls = []
    model.s3.pathway0_res0.branch2.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, 4, 32, 32)
    for enabled, expected in ((False, 1), (True, 2)):  # one forward, plus one recomputation when checkpointed
        calls.clear()
        assert set_activation_checkpointing(model, enabled) == 4
        model([x]).sum().backward()
        assert len(calls) == expected


# ------------------------------------------------------------------------------------------------ #
# Multigrid
# ------------------------------------------------------------------------------------------------ #


def test_long_cycle_schedule_matches_pyslowfast():
    """Facts computed with PySlowFast's MultigridSchedule for its Kinetics SLOWFAST_8x8_R50_stepwise_multigrid
    recipe (32 frames at 224, STEPS [0, 94, 154, 196], MAX_EPOCH 239, short and long cycles)."""
    from vov3d.datasets.multigrid import prepare_config

    cfg = _cfg("DATA.NUM_FRAMES", "32", "DATA.TRAIN_CROP_SIZE", "224", "SOLVER.LR_POLICY", "steps_with_relative_lrs",
               "SOLVER.STEPS", "[0, 94, 154, 196]", "SOLVER.LRS", "[1, 0.1, 0.01, 0.001]", "SOLVER.MAX_EPOCH", "239",
               "MULTIGRID.SHORT_CYCLE", "True", "MULTIGRID.LONG_CYCLE", "True")
    out, schedule = prepare_config(cfg)
    shapes = [[8, 8, 158], [4, 16, 158], [2, 16, 224], [1, 32, 224]]
    ends = [73, 110, 142, 158, 205, 228, 248, 259, 291, 308, 322, 329, 358]
    assert schedule == [(i // 4, shapes[min(i, 12) % 4] if i < 12 else shapes[3], e) for i, e in enumerate(ends)]
    assert out.SOLVER.STEPS == [0, 73, 110, 142, 158, 205, 228, 248, 259, 291, 308, 322, 329, 343]
    assert out.SOLVER.LRS == pytest.approx([8, 4, 2, 1, .8, .4, .2, .1, .08, .04, .02, .01, .01, .001])
    assert out.SOLVER.MAX_EPOCH == 358 and cfg.SOLVER.MAX_EPOCH == 239  # the caller's config is left alone


@pytest.fixture(scope="module")
def ssv1_small(tmp_path_factory):
    from vov3d.datasets import synthetic

    return synthetic.make_ssv1(str(tmp_path_factory.mktemp("ssv1")), videos_per_split={"train": 16, "val": 1, "test": 0},
                               frames_range=(8, 10))


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_multigrid_batches_have_the_shapes_of_their_iteration(ssv1_small):
    from vov3d.datasets import loader
    from vov3d.datasets.multigrid import iterations_per_epoch, prepare_config

    cfg = _cfg(*ssv1_small.cfg_opts(), "TRAIN.DATASET", "ssv1", "NUM_GPUS", "0", "DATA.NUM_FRAMES", "4",
               "DATA.TRAIN_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "TRAIN.BATCH_SIZE", "1",
               "DATA_LOADER.NUM_WORKERS", "0", "SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 2]",
               "SOLVER.LRS", "[1, 0.1]", "SOLVER.MAX_EPOCH", "3", "MULTIGRID.SHORT_CYCLE", "True",
               "MULTIGRID.LONG_CYCLE", "True", "MULTIGRID.LONG_CYCLE_FACTORS", "[[0.5, 0.70710678], [1.0, 1.0]]")
    cfg, schedule = prepare_config(cfg)
    assert [e[1] for e in schedule] == [[4, 2, 23], [1, 4, 32], [1, 4, 32]]
    train = loader.construct_loader(cfg, "train", multigrid_schedule=schedule)

    def shapes(epoch, skip=0):
        loader.shuffle_dataset(train, epoch, skip_batches=skip)
        return [(tuple(x[0].shape), idx.tolist()) for x, _, idx, _ in train]

    # A phase of (2 frames, crop 23): batch 4; short cycle crops 16 and 23 with batches 4 x (23/16)^2 ~ 8 and 4.
    assert schedule[0][-1] >= 1
    got = [s for s, _ in shapes(0)]
    # (the third iteration of a cycle has the phase's own crop, here also 23)
    assert got == [(8, 3, 2, 16, 16), (4, 3, 2, 23, 23), (4, 3, 2, 23, 23)] and iterations_per_epoch(train, 0) == 3
    last = schedule[-1][-1] - 1  # the last phase: the default shape, batches 4, 2, 1 of crops 16, 23, 32
    full = shapes(last)
    assert [s for s, _ in full] == [(4, 3, 4, 16, 16), (2, 3, 4, 23, 23), (1, 3, 4, 32, 32)] * 2  # 14 of 16 clips
    assert len(full) == iterations_per_epoch(train, last) == 6
    assert shapes(last, skip=5) == full[5:]  # a mid-epoch resume continues with the same batches and shapes


def test_toy_multigrid_training_stops_mid_epoch_and_resumes_bit_exact(tmp_path, monkeypatch):
    """Multigrid long + short cycles, mixup and clipping in the loop: the iterations of each phase, the LR of
    the schedule, every step mixed and clipped, and a stop in the middle of an epoch resumed to the same
    weights as an uninterrupted run (mixing draws are seeded per iteration, not taken from the global RNG)."""
    from test_engine_toys import EngineToyData, toy_cfg
    from vov3d.datasets import mixup
    from vov3d.engine import signals, train as train_mod
    from vov3d.utils import checkpoint as cu

    mixed, norms = [], []
    real_call, real_clip = mixup.MixUp.__call__, solver.clip_gradients

    def counting_call(self, x, labels, rng):
        x, t = real_call(self, x, labels, rng)
        mixed.append(x.size(0) == 1 or bool(t.max().item() < 0.95))  # a mixed row has no near-one entry
        return x, t

    def recording_clip(cfg, optimizer, scaler=None):
        norm = real_clip(cfg, optimizer, scaler)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append((norm.item(), torch.nn.utils.get_total_norm([p.grad for p in params]).item()))
        return norm

    monkeypatch.setattr(mixup.MixUp, "__call__", counting_call)
    monkeypatch.setattr(solver, "clip_gradients", recording_clip)

    monkeypatch.setitem(EngineToyData.SIZES, "train", 16)
    opts = ("MULTIGRID.LONG_CYCLE", "True", "MULTIGRID.SHORT_CYCLE", "True", "TRAIN.BATCH_SIZE", "1",
            "MULTIGRID.LONG_CYCLE_FACTORS", "[[0.5, 0.70710678], [1.0, 1.0]]", "DATA.NUM_FRAMES", "4",
            "DATA.TRAIN_CROP_SIZE", "32", "SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 1]",
            "SOLVER.LRS", "[1, 0.1]", "SOLVER.MAX_EPOCH", "2", "SOLVER.WARMUP_EPOCHS", "0.0", "TEST.ENABLE", "False",
            "TRAIN.EVAL_PERIOD", "0", "MIXUP.ENABLE", "True", "MIXUP.CUTMIX_ALPHA", "0.0", "MIXUP.ALPHA", "2.0",
            "SOLVER.CLIP_GRAD_L2NORM", "0.05")
    seen = []
    real_epoch = train_mod.train_epoch

    def recording_epoch(loader, *a, **kw):
        seen.append((a[4], kw["epoch_iters"], kw["start_iter"]))  # (epoch, its iterations, first iteration)
        return real_epoch(loader, *a, **kw)

    monkeypatch.setattr(train_mod, "train_epoch", recording_epoch)
    full = tmp_path / "full"
    res = train_mod.train(toy_cfg(full, *opts))
    epochs = [e for e, _, _ in seen]
    # PySlowFast's schedule (x EPOCH_FACTOR 1.5): phases (2 frames, crop 23) for epoch 1, (4, 32) for 2, the
    # final (4, 32) for 3.
    assert epochs == list(range(3))
    assert [n for _, n, _ in seen] == [3, 6, 6]  # batches 8, 4, 4 of 16 clips; then 4, 2, 1, 4, 2, 1
    assert res["train"]["lr"] == pytest.approx(0.1 * 0.1)  # STEPS [0, 1, 2], LRS [4, 1, 0.1] x BASE_LR
    assert len(norms) == 15 and all(b > 0.05 and a == pytest.approx(0.05, rel=1e-4) for b, a in norms)
    assert len(mixed) == 15 and sum(mixed) >= 13  # Beta(2, 2) leaves a batch near-unmixed rarely
    # Stop after iteration 2 of epoch 2 (0-based 1; stop_requested is asked after every iteration but an
    # epoch's last, and after every epoch), then run the same command again.
    calls = {"n": 0}

    def stop_once():
        calls["n"] += 1
        return calls["n"] == 3 + 2
    part = tmp_path / "part"
    monkeypatch.setattr(signals, "stop_requested", stop_once)
    monkeypatch.setattr(signals, "requested_signal", lambda: "SIGTERM")
    with pytest.raises(signals.Preempted):
        train_mod.train(toy_cfg(part, *opts))
    monkeypatch.setattr(signals, "stop_requested", lambda: False)
    seen.clear()
    train_mod.train(toy_cfg(part, *opts))
    assert seen[0] == (1, 6, 2)
    a = cu.read_checkpoint(cu.get_path_to_checkpoint(str(full), 3))["model_state"]
    b = cu.read_checkpoint(cu.get_path_to_checkpoint(str(part), 3))["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
