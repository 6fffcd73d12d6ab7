"""Fast checks of the trained trimmer (models/trimmer.py) and its losses (models/losses.py)."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from vmr_models.losses import (LossWeights, clip_targets, distillation_loss, selection_loss, total_loss,
                           vmr_loss)
from vmr_models.trimmer import (NEG, Trimmer, TrimmerConfig, decode_clips, decode_moments,
                            trimmer_from_config)

B, N, D, L, DT = 3, 20, 16, 5, 8
LENGTHS = (20, 15, 6)
OUTPUT_KEYS = {"fused", "selected", "step_masks", "keep_logits", "keep_probs",
               "highlight_logits", "start_logits", "end_logits"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is several times faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(**overrides):
    base = dict(dim=D, hidden=32, layers=2, heads=4, steps=3, budget=0.1, min_per_step=2,
                dropout=0.1, token_dim=DT, tau=1.0)
    return TrimmerConfig(**(base | overrides))


def model_of(seed=0, keep_bias=None, **overrides):
    """A fresh Trimmer; keep_bias shifts the selector's keep logits (+-20: keep every clip it may / none)."""
    torch.manual_seed(seed)
    model = Trimmer(config(**overrides))
    if keep_bias is not None:
        with torch.no_grad():
            model.selection.scorer[-1].bias.add_(keep_bias)
    return model


def make_batch(seed=0, lengths=LENGTHS, n=N, tokens=True):
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    valid = torch.arange(n).expand(b, n) < torch.tensor(lengths).unsqueeze(1)
    batch = {"A": F.normalize(torch.randn(b, n, D, generator=g), dim=-1),
             "B": F.normalize(torch.randn(b, n, D, generator=g), dim=-1),
             "M": 0.3 * torch.randn(b, n, D, generator=g),
             "motion": torch.rand(b, n, generator=g),
             "shot_start": (torch.rand(b, n, generator=g) < 0.2).float(),
             "c": F.normalize(torch.randn(b, n, D, generator=g), dim=-1),
             "query": F.normalize(torch.randn(b, D, generator=g), dim=-1),
             "valid": valid}
    if tokens:
        batch["tokens"] = torch.randn(b, L, DT, generator=g)
        batch["token_mask"] = torch.arange(L).expand(b, L) < torch.tensor([L, 2, 0][:b]).unsqueeze(1)
    return batch


def targets_of(batch, starts=(2.0, 5.5, 0.0), ends=(6.0, 9.0, 3.5)):
    clip_start = torch.arange(batch["A"].shape[1]).float().expand(batch["A"].shape[:2])
    return clip_targets(torch.tensor(starts), torch.tensor(ends), clip_start, clip_start + 1, batch["valid"])


def run_eval(model, batch, mode="student"):
    model.eval()
    with torch.no_grad():
        return model(batch, mode)


def assert_same(a, b):
    for key in OUTPUT_KEYS:
        assert torch.equal(a[key], b[key]), key


# --- network ----------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_output_shapes(training):
    model, batch = model_of(), make_batch()
    model.train(training)
    student, teacher = model(batch), model(batch, "teacher")
    assert set(student) == set(teacher) == OUTPUT_KEYS
    assert student["fused"].shape == teacher["fused"].shape == (B, N, 32)
    for key in ("selected", "highlight_logits", "start_logits", "end_logits"):
        assert student[key].shape == teacher[key].shape == (B, N)
    for key in ("step_masks", "keep_logits", "keep_probs"):
        assert student[key].shape == (B, 3, N) and teacher[key].shape == (B, 0, N)
    assert torch.equal(teacher["selected"], batch["valid"].float())
    assert all(isinstance(v, torch.Tensor) for v in model.state_dict().values())
    without_tokens = {k: v for k, v in batch.items() if k not in ("tokens", "token_mask")}
    assert model(without_tokens)["start_logits"].shape == (B, N)


def test_padding_is_ignored():
    model, batch = model_of(keep_bias=3.0), make_batch()
    out = run_eval(model, batch)
    pad = ~batch["valid"]
    for key in ("start_logits", "end_logits", "highlight_logits"):
        assert (out[key][pad] == NEG).all()
    assert (out["fused"][pad] == 0).all() and (out["selected"][pad] == 0).all()
    noisy = dict(batch)
    g = torch.Generator().manual_seed(9)
    for key in ("A", "B", "M", "c", "motion", "shot_start"):
        junk = 100 * torch.randn(batch[key].shape, generator=g)
        noisy[key] = torch.where(pad.view(*pad.shape, *[1] * (batch[key].dim() - 2)), junk, batch[key])
    assert_same(out, run_eval(model, noisy))
    empty = make_batch(lengths=(20, 0, 6))  # a video without clips: finite, nothing chosen
    for mode in ("student", "teacher"):
        out_empty = run_eval(model, empty, mode)
        assert all(torch.isfinite(v).all() for v in out_empty.values())
        assert out_empty["selected"][1].sum() == 0
    assert decode_clips(out_empty["start_logits"][1], out_empty["end_logits"][1],
                        out_empty["highlight_logits"][1], empty["valid"][1]) == []
    # a video alone, unpadded, reads the same as inside the padded batch
    alone = {k: (v[2:3, :6] if v.dim() > 1 and v.shape[1] == N else v[2:3]) for k, v in batch.items()}
    single = run_eval(model, alone)
    for key in ("start_logits", "end_logits", "highlight_logits", "selected"):
        assert torch.allclose(single[key][0], out[key][2, :6], atol=1e-5), key


def test_padded_query_tokens_are_ignored():
    """Tokens past a query's mask change nothing, and a query alone (unpadded, as search passes
    it) reads as inside a batch padded to its longest query (as training passes it)."""
    model, batch = model_of(keep_bias=3.0), make_batch()
    out = run_eval(model, batch)
    g = torch.Generator().manual_seed(4)
    noisy = dict(batch, tokens=torch.where(batch["token_mask"].unsqueeze(-1), batch["tokens"],
                                           100 * torch.randn(batch["tokens"].shape, generator=g)))
    for key in OUTPUT_KEYS:
        assert torch.allclose(out[key], run_eval(model, noisy)[key], atol=1e-5), key
    longer = dict(batch, tokens=torch.cat([batch["tokens"], torch.randn(B, 3, DT, generator=g)], 1),
                  token_mask=torch.cat([batch["token_mask"], torch.zeros(B, 3, dtype=torch.bool)], 1))
    for key in OUTPUT_KEYS:
        assert torch.allclose(out[key], run_eval(model, longer)[key], atol=1e-5), key
    alone = {k: v[1:2] for k, v in batch.items()}
    alone["tokens"], alone["token_mask"] = batch["tokens"][1:2, :2], None  # its own 2 tokens, no mask
    single = run_eval(model, alone)
    for key in ("start_logits", "end_logits", "highlight_logits", "selected"):
        assert torch.allclose(single[key][0], out[key][1], atol=1e-5), key
    # the tokens are read: other tokens, other outputs
    other = dict(batch, tokens=torch.randn(batch["tokens"].shape, generator=g))
    assert not torch.allclose(out["start_logits"][0], run_eval(model, other)["start_logits"][0])


@pytest.mark.parametrize("training", [True, False])
def test_unselected_expensive_features_never_leak(training):
    model, batch = model_of(keep_bias=1.0), make_batch()
    model.train(training)
    torch.manual_seed(5)
    out = model(batch)
    chosen = out["selected"].detach() > 0.5
    assert 0 < chosen.sum() < batch["valid"].sum()
    changed = dict(batch, c=torch.where(chosen.unsqueeze(-1), batch["c"], 50 * torch.randn(B, N, D)))
    torch.manual_seed(5)  # same dropout and Gumbel noise
    assert_same(out, model(changed))


def test_expensive_features_fetched_lazily_once_per_selected_clip():
    model, batch = model_of(keep_bias=1.0), make_batch()
    asked = []

    def fetch(need):
        asked.append(need.clone())
        return torch.where(need.unsqueeze(-1), batch["c"], torch.nan)  # rows not asked for: unusable

    out = run_eval(model, batch)
    lazy = run_eval(model, dict(batch, c=fetch))
    assert_same(out, lazy)
    requested = torch.stack(asked).sum(0)
    assert requested.max() == 1 and torch.equal(requested.bool(), out["selected"].bool())
    teacher_asked = len(asked)
    run_eval(model, dict(batch, c=fetch), mode="teacher")
    assert torch.equal(asked[teacher_asked], batch["valid"])


def test_gradients_reach_every_parameter():
    model, batch = model_of(), make_batch()
    targets = targets_of(batch)
    model.train()
    torch.manual_seed(1)
    student, teacher = model(batch), model(batch, "teacher")
    loss, parts = total_loss(student, targets, batch["valid"], model.config, teacher,
                             LossWeights(relevance=0.5))
    (loss + vmr_loss(teacher, targets, batch["valid"])).backward()
    assert set(parts) == {"selection", "vmr", "distillation"}
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().max() > 0, name


def test_selection_is_straight_through_in_training():
    """The task loss alone reaches the selector, through the hard 0/1 masks."""
    model, batch = model_of(keep_bias=0.0), make_batch()
    model.train()
    torch.manual_seed(2)
    out = model(batch)
    masks = out["step_masks"]
    assert masks.requires_grad and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert out["selected"].max() <= 1
    vmr_loss(out, targets_of(batch), batch["valid"]).backward()
    assert model.selection.scorer[-1].bias.grad.abs() > 0


def test_selection_is_hard_and_deterministic_in_eval():
    model, batch = model_of(keep_bias=0.5), make_batch()
    torch.manual_seed(1)
    first = run_eval(model, batch)
    torch.manual_seed(123)
    second = run_eval(model, batch)
    assert_same(first, second)
    assert first["selected"].sum() > 0
    assert set(first["selected"].unique().tolist()) <= {0.0, 1.0}
    assert set(first["step_masks"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first["step_masks"].sum(1), first["selected"])


def test_budget_per_step_and_best_clips_first():
    model = model_of(seed=3, keep_bias=1.0, steps=4, budget=0.25, min_per_step=2)
    batch = make_batch(seed=3)
    out = run_eval(model, batch)
    masks, logits = out["step_masks"], out["keep_logits"]
    selected_before = torch.zeros(B, N)
    at_cap = 0
    for k in range(4):
        for b, n in enumerate(LENGTHS):
            new = masks[b, k].bool()
            cap = max(2, math.floor(0.25 * n))
            assert new.sum() <= cap
            at_cap += int(new.sum() == cap)
            if new.any():  # chosen: keep logit > 0, and no better available clip left out
                assert (logits[b, k][new] > 0).all()
                left = batch["valid"][b] & ~new & (selected_before[b] == 0)
                assert (logits[b, k][left] <= logits[b, k][new].min()).all()
        selected_before += masks[:, k]
    assert at_cap > 0  # the cap binds, not only the sign of the logits


def test_early_stop_when_a_step_adds_nothing():
    calls = []
    one_video = make_batch(lengths=(6,))
    for bias, steps_expected, passes_expected in ((20.0, [2, 2, 2, 0, 0], 4), (-20.0, [0] * 5, 1)):
        model = model_of(keep_bias=bias, steps=5, budget=0.1, min_per_step=2)
        model.fusion.register_forward_hook(lambda *args: calls.append(1))
        calls.clear()
        out = run_eval(model, one_video)
        assert out["step_masks"].sum(-1)[0].tolist() == steps_expected
        assert len(calls) == passes_expected  # stops, and reuses the last pass for the head


# --- decoding ---------------------------------------------------------------------

def peaks(n, heights):
    return torch.tensor([heights.get(i, 0.0) for i in range(n)])


def test_decode_windows():
    n = 12
    start, end = peaks(n, {3: 8.0, 8: 6.0}), peaks(n, {6: 8.0, 10: 6.0})
    highlight = torch.full((n,), -4.0)
    highlight[3:7] = 4.0
    (first, last, score), = decode_clips(start, end, highlight)
    assert (first, last) == (3, 6) and 0.5 < score < 1
    windows = decode_clips(start, end, highlight, top_k=3)
    assert [w[:2] for w in windows[:2]] == [(3, 6), (8, 10)]
    spans = [set(range(a, b + 1)) for a, b, _ in windows]
    assert all(not (x & y) for i, x in enumerate(spans) for y in spans[i + 1:])
    first, last, _ = decode_clips(start, end, highlight, max_len=2)[0]
    assert last - first < 2
    valid = torch.arange(n) < 5  # the end peak at 6 is padding
    first, last, _ = decode_clips(start, end, highlight, valid=valid)[0]
    assert first == 3 and last < 5
    times = torch.arange(n) * 2.0
    assert decode_moments(start, end, highlight, times, times + 2.0)[0][:2] == (6.0, 14.0)
    assert decode_clips(start, end, highlight, top_k=3) == windows  # deterministic


# --- losses -----------------------------------------------------------------------

def test_clip_targets():
    batch = make_batch()
    t = targets_of(batch)
    assert t["start_idx"].tolist() == [2, 5, 0] and t["end_idx"].tolist() == [5, 8, 3]
    assert t["inside"][1, 4:10].tolist() == [0.0, 0.5, 1.0, 1.0, 1.0, 0.0]
    assert (t["inside"][~batch["valid"]] == 0).all()


def perfect_moment_output(targets, valid, margin=30.0):
    idx = torch.arange(valid.shape[1])
    out = {key: torch.where(idx == targets[at].unsqueeze(1), margin, -margin).masked_fill(~valid, NEG)
           for key, at in (("start_logits", "start_idx"), ("end_logits", "end_idx"))}
    return out | {"highlight_logits": torch.where(targets["inside"] > 0.5, margin, -margin)}


def test_vmr_loss_zero_when_right_larger_when_wrong():
    batch = make_batch()
    valid = batch["valid"]
    targets = dict(targets_of(batch))
    targets["inside"] = (targets["inside"] > 0.5).float()  # hard targets: a perfect loss is 0
    right = perfect_moment_output(targets, valid)
    wrong = dict(right, start_logits=right["end_logits"], highlight_logits=-right["highlight_logits"])
    assert vmr_loss(right, targets, valid) < 1e-6
    assert vmr_loss(wrong, targets, valid) > 10


def test_selection_loss_zero_on_budget_larger_off_budget():
    cfg = config(steps=3, budget=0.1, min_per_step=2)
    valid = make_batch()["valid"]
    n = valid.sum(1, keepdim=True).float()
    target = cfg.step_cap(valid.sum(1)).float().unsqueeze(1) / n  # per-step share of each video
    on_budget = (target * valid).unsqueeze(1).expand(B, 3, N)  # spread evenly over valid clips
    assert selection_loss({"keep_probs": on_budget}, valid, cfg) < 1e-10
    assert selection_loss({"keep_probs": 3 * on_budget}, valid, cfg) > 0.01
    assert selection_loss({"keep_probs": 0 * on_budget}, valid, cfg) > 0.01
    relevance = targets_of(make_batch())["inside"]
    right = torch.where(relevance > 0.5, 30.0, -30.0).unsqueeze(1).expand(B, 3, N)
    base = selection_loss({"keep_probs": on_budget, "keep_logits": right}, valid, cfg)
    good = selection_loss({"keep_probs": on_budget, "keep_logits": right}, valid, cfg,
                          (relevance > 0.5).float(), relevance_weight=1.0)
    bad = selection_loss({"keep_probs": on_budget, "keep_logits": -right}, valid, cfg,
                         (relevance > 0.5).float(), relevance_weight=1.0)
    assert base < 1e-10 and good < 1e-6 and bad > 10


def test_distillation_zero_for_the_teacher_itself():
    model, batch = model_of(), make_batch()
    teacher = run_eval(model, batch, "teacher")
    student = run_eval(model, batch)
    valid = batch["valid"]
    assert distillation_loss(teacher, teacher, valid) == 0
    assert distillation_loss(teacher, teacher, valid, temperature=2.0) == 0
    assert distillation_loss(student, teacher, valid) > 0
    model.train()
    grad_out = model(batch)
    distillation_loss(grad_out, dict(teacher, fused=teacher["fused"].requires_grad_()), valid).backward()
    assert teacher["fused"].grad is None  # the teacher stays fixed


def test_total_loss_is_the_weighted_sum():
    model, batch = model_of(), make_batch()
    targets, valid = targets_of(batch), batch["valid"]
    student, teacher = run_eval(model, batch), run_eval(model, batch, "teacher")
    weights = LossWeights(selection=2.0, vmr=0.5, distillation=3.0)
    total, parts = total_loss(student, targets, valid, model.config, teacher, weights)
    assert math.isclose(float(total), 2 * parts["selection"] + 0.5 * parts["vmr"]
                        + 3 * parts["distillation"], rel_tol=1e-5)
    assert set(total_loss(student, targets, valid, model.config)[1]) == {"selection", "vmr"}


# --- configuration and checkpoints ------------------------------------------------

def test_bad_config_and_batch_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of heads"):
        TrimmerConfig(dim=D, hidden=30, heads=4)
    for zero in ("heads", "hidden", "dim", "layers"):  # heads 0 in an edited config.json: ZeroDivisionError
        with pytest.raises(ValueError, match="heads and layers >= 1"):
            TrimmerConfig(**{"dim": D, zero: 0})
    model, batch = model_of(), make_batch()
    with pytest.raises(ValueError, match="query"):
        model(dict(batch, query=batch["query"][:, :4]))
    with pytest.raises(ValueError, match="lacks"):
        model({k: v for k, v in batch.items() if k != "c"})
    with pytest.raises(ValueError, match="token_dim"):
        model_of(token_dim=None)(batch)
    for key, value in (("tokens", batch["tokens"][..., :3]), ("tokens", batch["tokens"][:1]),
                       ("tokens", batch["tokens"][0]), ("token_mask", batch["token_mask"][:, :2])):
        with pytest.raises(ValueError, match=key):
            model(dict(batch, **{key: value}))
    with pytest.raises(ValueError, match="mode"):
        model(batch, mode="exhaustive")


def test_checkpoint_round_trip(tmp_path):
    model, batch = model_of(keep_bias=0.5), make_batch()
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(model.config_dict()))
    loaded = trimmer_from_config(json.loads((tmp_path / "config.json").read_text()))
    loaded.load_state_dict(load_file(str(tmp_path / "w.safetensors")), strict=True)
    assert loaded.config == model.config
    assert_same(run_eval(model, batch), run_eval(loaded, batch))
    assert_same(run_eval(model, batch, "teacher"), run_eval(loaded, batch, "teacher"))


# --- learning ---------------------------------------------------------------------

def toy_world(count, seed, n=16):
    """Videos whose moment clips' appearance points toward the query; elsewhere random."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(10, n + 1, (count,), generator=g)
    valid = torch.arange(n).expand(count, n) < lengths.unsqueeze(1)
    query = F.normalize(torch.randn(count, D, generator=g), dim=-1)
    span = torch.randint(2, 6, (count,), generator=g)
    start = (torch.rand(count, generator=g) * (lengths - span + 1)).floor().long()
    clip = torch.arange(n).expand(count, n)
    inside = (clip >= start.unsqueeze(1)) & (clip < (start + span).unsqueeze(1))
    noise = F.normalize(torch.randn(count, n, D, generator=g), dim=-1)
    A = F.normalize(noise + 1.2 * inside.unsqueeze(-1) * query.unsqueeze(1), dim=-1)
    batch = {"A": A, "B": F.normalize(A + A.roll(1, 1) + A.roll(-1, 1), dim=-1), "M": A - A.roll(1, 1),
             "motion": torch.rand(count, n, generator=g), "shot_start": (clip == 0).float(),
             "c": F.normalize(A + 0.3 * torch.randn(count, n, D, generator=g), dim=-1),
             "query": query, "valid": valid}
    clip_start = 2.0 * clip.float()  # 2-second clips
    truth = torch.stack([2.0 * start, 2.0 * (start + span)], 1).float()
    return batch, truth, clip_start


def iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def recall_at_half(model, world):
    batch, truth, clip_start = world
    out = run_eval(model, batch)
    hits = [iou(decode_moments(out["start_logits"][b], out["end_logits"][b],
                                        out["highlight_logits"][b], clip_start[b], clip_start[b] + 2,
                                        batch["valid"][b])[0][:2], tuple(truth[b].tolist())) >= 0.5
            for b in range(truth.shape[0])]
    return sum(hits) / len(hits)


def test_learns_a_toy_world():
    """SpotEM's recipe in miniature: train the teacher (all clips), freeze it, train the student."""
    train, held_out = toy_world(64, seed=1), toy_world(64, seed=2)
    batch, truth, clip_start = train
    valid = batch["valid"]
    targets = clip_targets(truth[:, 0], truth[:, 1], clip_start, clip_start + 2, valid)
    model = model_of(seed=0, token_dim=None, layers=1, steps=2, dropout=0.0)
    before = recall_at_half(model, held_out)

    def fit(steps, loss_of):
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        history = []
        for _ in range(steps):
            loss = loss_of()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            history.append(float(loss.detach()))
        return history

    teacher_losses = fit(40, lambda: vmr_loss(model(batch, "teacher"), targets, valid))
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    with torch.no_grad():
        teacher_out = teacher(batch, "teacher")
    student_losses = fit(40, lambda: total_loss(model(batch), targets, valid, model.config, teacher_out)[0])
    after = recall_at_half(model, held_out)
    assert sum(teacher_losses[-5:]) < 0.2 * sum(teacher_losses[:5])
    assert sum(student_losses[-5:]) < 0.5 * sum(student_losses[:5])
    assert after >= before + 0.4 and after >= 0.6, (before, after)
