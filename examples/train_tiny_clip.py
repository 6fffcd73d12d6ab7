"""Train the tiny CLIP of the synthetic world from scratch, contrastively, on the CPU.

    python examples/train_tiny_clip.py --out examples/models/tiny-clip --minutes 25 --seed 0

Frames are rendered with synthetic_world's own drawing code (no video files)
and go through exactly vmr's preprocessing (resize_center_crop, normalize).
Captions mention all or part of what a frame shows ("a red circle",
"the beach", "the red circle moves up on the beach"); a caption counts as a
positive for every image in the batch that shows everything it mentions, so
equal or partial captions are never treated as false negatives.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

import synthetic_world as world  # noqa: E402
from tiny_clip import BASIC_WORDS, build_tokenizer, tiny_config, words_of, write_preprocessor_config  # noqa: E402
from vmr_cli.frames import normalize, resize_center_crop  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
SCENE_FORMS = ["{p}", "the {s}", "a {s}"]      # "on the beach", "the beach", "a beach"


def vocabulary() -> list[str]:
    """Every word a caption or a generated query can contain, plus BASIC_WORDS."""
    texts = [" ".join(world.COLOURS), " ".join(world.SHAPES), " ".join(world.SCENES),
             " ".join(world.SCENE_PHRASES.values()), " ".join(world.ACTIONS.values()),
             "a an the and", " ".join(BASIC_WORDS)]
    return words_of(texts)


def object_phrase(rng, colour, shape) -> str:
    article = str(rng.choice(["a", "the"]))
    if article == "a" and colour[0] in "aeiou":
        article = "an"
    return f"{article} {colour} {shape}"


def scene_phrase(rng, scene) -> str:
    form = str(rng.choice(SCENE_FORMS))
    return form.format(p=world.SCENE_PHRASES[scene], s=scene)


def sample_frame(rng: np.random.Generator, size=(160, 120)):
    """A rendered frame of the world, its facts, and one caption with the facts it claims."""
    scene = str(rng.choice(world.SCENES))
    n = int(rng.choice([0, 1, 2, 3], p=[0.12, 0.43, 0.3, 0.15]))
    combos = [world.ALL_COMBOS[i] for i in rng.choice(len(world.ALL_COMBOS), n, replace=False)]
    objects, states = [], []
    for colour, shape in combos:
        for _ in range(10):            # keep objects apart so none is hidden
            obj = world.random_object(rng, 0.0, 1.0)
            obj.update(colour=colour, shape=shape)
            state = world.object_state(obj, float(rng.uniform(0, 1)))
            if state is None or state[3] < 0.6:
                continue
            if all(math.hypot(state[0] - s[0], state[1] - s[1]) > 0.8 * (state[2] + s[2]) / 2 for s in states):
                break
        else:
            continue
        obj["fixed"] = state
        objects.append(obj)
        states.append(state)
    img = world.scene_background(scene, size[0], size[1], int(rng.integers(0, 8))).copy()
    for obj in objects:
        world.draw_object(img, obj["colour"], obj["shape"], obj["fixed"])
    facts = {("scene", scene)} | {("obj", o["colour"], o["shape"]) for o in objects}

    kind = rng.random()
    if not objects or kind < 0.15:
        return img, facts, scene_phrase(rng, scene), {("scene", scene)}
    if kind < 0.35:                       # everything
        parts = [object_phrase(rng, o["colour"], o["shape"]) for o in objects]
        text = " and ".join(parts) + " " + scene_phrase(rng, scene)
        return img, facts, text, facts
    o = objects[int(rng.integers(len(objects)))]
    claim = {("obj", o["colour"], o["shape"])}
    text = object_phrase(rng, o["colour"], o["shape"])
    if kind > 0.6:                        # query-like: the action is not visible in one frame
        text += " " + world.ACTIONS[str(rng.choice(list(world.ACTIONS)))]
    if rng.random() < 0.5:
        text += " " + scene_phrase(rng, scene)
        claim.add(("scene", scene))
    return img, facts, text, claim


def preprocess(frames: list[np.ndarray], image_size: int) -> torch.Tensor:
    """HxWx3 uint8 frames -> normalised model input, exactly as vmr does it."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    return normalize(resize_center_crop(x, image_size), MEAN, STD)


def multi_positive_loss(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE whose targets spread over every true (image, caption) pair."""
    pos = pos.float()
    i2t = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    t2i = -(pos / pos.sum(0, keepdim=True) * F.log_softmax(logits, 0)).sum(0).mean()
    return (i2t + t2i) / 2


@torch.no_grad()
def embed_text(model, tok, texts):
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    return F.normalize(model.get_text_features(**enc).pooler_output, dim=-1)


@torch.no_grad()
def embed_images(model, frames, image_size, batch=256):
    out = [model.get_image_features(pixel_values=preprocess(frames[i:i + batch], image_size)).pooler_output
           for i in range(0, len(frames), batch)]
    return F.normalize(torch.cat(out), dim=-1)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random in-window frame outscores a random outside frame."""
    scores = np.concatenate([pos, neg])
    ranks = scores.argsort().argsort() + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@torch.no_grad()
def evaluate(model, tok, image_size: int, seed: int = 12345, n: int = 700) -> dict:
    """Held-out zero-shot accuracies and frame-level retrieval on a fresh world."""
    model.eval()
    rng = np.random.default_rng(seed)
    combos = world.ALL_COMBOS
    frames, labels = [], []
    for _ in range(n):                    # one object, any scene
        scene = str(rng.choice(world.SCENES))
        obj = world.random_object(rng, 0.0, 1.0)
        obj["colour"], obj["shape"] = combos[int(rng.integers(len(combos)))]
        state = world.object_state(obj, float(rng.uniform(0.05, 0.6)))
        img = world.scene_background(scene, 160, 120, int(rng.integers(0, 4))).copy()
        world.draw_object(img, obj["colour"], obj["shape"], state)
        frames.append(img)
        labels.append((combos.index((obj["colour"], obj["shape"])), world.SCENES.index(scene)))
    img_emb = embed_images(model, frames, image_size)
    cs_txt = embed_text(model, tok, [f"a {c} {s}" for c, s in combos])
    sc_txt = embed_text(model, tok, [world.SCENE_PHRASES[s] for s in world.SCENES])
    lab = torch.tensor(labels)
    cs_acc = float(((img_emb @ cs_txt.T).argmax(1) == lab[:, 0]).float().mean())
    sc_acc = float(((img_emb @ sc_txt.T).argmax(1) == lab[:, 1]).float().mean())
    colour_acc = float(torch.tensor([combos[int(p)][0] == combos[int(t)][0] for p, t in
                                     zip((img_emb @ cs_txt.T).argmax(1), lab[:, 0])]).float().mean())
    shape_acc = float(torch.tensor([combos[int(p)][1] == combos[int(t)][1] for p, t in
                                    zip((img_emb @ cs_txt.T).argmax(1), lab[:, 0])]).float().mean())

    aucs, wins, top1 = [], [], []
    for plan in world.plan_world(6, 180, seed):
        if plan["events"]:
            times = np.arange(0.25, plan["duration"], 0.5)
            frames = [world.render_frame(plan, float(t)) for t in times]
            r = retrieval_scores(model, tok, image_size, frames, times, plan["events"])
            aucs, wins, top1 = aucs + r["aucs"], wins + r["wins"], top1 + r["top1"]
    model.train()
    return {"colour_shape_acc": cs_acc, "colour_acc": colour_acc, "shape_acc": shape_acc,
            "scene_acc": sc_acc, "chance_colour_shape": 1 / len(combos), "chance_scene": 1 / len(world.SCENES),
            "events": len(aucs), "retrieval_auc": float(np.mean(aucs)),
            "in_window_mean_beats_outside": float(np.mean(wins)), "top1_frame_in_window": float(np.mean(top1))}


def retrieval_scores(model, tok, image_size, frames, times, events) -> dict:
    """Per-event AUC, in-window-mean-beats-outside and top-1-frame-in-window."""
    emb = embed_images(model, frames, image_size)
    sims = (emb @ embed_text(model, tok, [e["query"] for e in events]).T).numpy()
    aucs, wins, top1 = [], [], []
    for k, ev in enumerate(events):
        inside = (times >= ev["start"]) & (times <= ev["end"])
        if inside.any() and (~inside).any():
            aucs.append(auc(sims[inside, k], sims[~inside, k]))
            wins.append(sims[inside, k].mean() > sims[~inside, k].mean())
            top1.append(bool(inside[sims[:, k].argmax()]))
    return {"aucs": aucs, "wins": wins, "top1": top1}


@torch.no_grad()
def evaluate_videos(model, tok, image_size: int, seed: int = 777, videos: int = 4, duration: float = 180) -> dict:
    """Retrieval on frames decoded from the generated H.264 files (codec blur included), 2 fps."""
    import subprocess
    import tempfile
    model.eval()
    out = {"aucs": [], "wins": [], "top1": []}
    with tempfile.TemporaryDirectory() as tmp:
        recs = world.generate_world(tmp, videos, duration, seed)
        for vid in sorted({r["vid"] for r in recs}):
            raw = subprocess.run(["ffmpeg", "-v", "error", "-i", f"{tmp}/{vid}.mp4", "-vf", "fps=2",
                                  "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
            frames = list(np.frombuffer(raw, np.uint8).reshape(-1, 120, 160, 3))
            times = np.arange(len(frames)) * 0.5 + 0.25
            events = [{"query": r["query"], "start": r["relevant_windows"][0][0], "end": r["relevant_windows"][0][1]}
                      for r in recs if r["vid"] == vid]
            for key, vals in retrieval_scores(model, tok, image_size, frames, times, events).items():
                out[key] += vals
    model.train()
    return {"video_events": len(out["aucs"]), "video_retrieval_auc": float(np.mean(out["aucs"])),
            "video_in_window_mean_beats_outside": float(np.mean(out["wins"])),
            "video_top1_frame_in_window": float(np.mean(out["top1"]))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "examples/models/tiny-clip"))
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--patch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-only", action="store_true", help="evaluate the model saved in --out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.eval_only:
        from transformers import AutoTokenizer, CLIPModel
        model, tok = CLIPModel.from_pretrained(args.out), AutoTokenizer.from_pretrained(args.out)
        size = model.config.vision_config.image_size
        metrics = {**evaluate(model, tok, size), **evaluate_videos(model, tok, size)}
        print(json.dumps(metrics, indent=2))
        return
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    from transformers import CLIPModel
    tok = build_tokenizer(vocabulary())
    config = tiny_config(len(tok), image_size=args.image_size, patch_size=args.patch_size, width=args.width,
                         layers=args.layers, heads=args.heads, projection_dim=64)
    model = CLIPModel(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    print(f"vocab {len(tok)}  params {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", flush=True)

    start, budget, step, warmup, avg = time.time(), args.minutes * 60, 0, 100, None
    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        samples = [sample_frame(rng) for _ in range(args.batch)]
        pixels = preprocess([s[0] for s in samples], args.image_size)
        enc = tok([s[2] for s in samples], padding=True, truncation=True, max_length=32, return_tensors="pt")
        pos = torch.tensor([[s_txt[3] <= s_img[1] for s_txt in samples] for s_img in samples])
        img = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        txt = F.normalize(model.get_text_features(**enc).pooler_output, dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        loss = multi_positive_loss(logits, pos)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        step += 1
        if step % 50 == 0:
            print(f"step {step}  {time.time() - start:6.0f}s  lr {lr:.2e}  loss {avg:.3f}  "
                  f"scale {model.logit_scale.exp().item():.1f}", flush=True)
    train_s = time.time() - start
    metrics = {**evaluate(model, tok, args.image_size), **evaluate_videos(model, tok, args.image_size)}
    metrics.update(steps=step, train_seconds=round(train_s), batch=args.batch, seed=args.seed)
    print(json.dumps(metrics, indent=2), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    write_preprocessor_config(out, args.image_size, MEAN, STD)
    (out / "training_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
