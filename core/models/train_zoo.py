"""Train the shipped Shapes models. The weights in assets/models come from this script.

Usage::

    python -m core.models.train_zoo --model shapes-cnn
    python -m core.models.train_zoo --model shapes-vit --teacher assets/models/shapes-cnn

Recipe (see shared/TRAINING-NOTES.md for the measurements behind it): every step draws a
fresh batch of Shapes images (split "train"), AdamW with a one-cycle schedule, label
smoothing 0.1. The ViT (conv stem) is also distilled from the CNN: loss =
(1-α)·CE + α·T²·KL(teacher_T ‖ student_T) with α = 0.5, T = 2 (Hinton et al. 2015).
Accuracy is measured on freshly generated images of the held-out "test" split.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from core.data.shapes import ID_CLASSES, ShapesConfig, ShapesWorld

from .zoo import SHAPES_ARCHITECTURES, build_architecture, count_parameters

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)

RECIPES = {
    "shapes-cnn": {"steps": 600, "batch": 128, "max_lr": 1e-3, "weight_decay": 0.05, "label_smoothing": 0.1,
                   "pct_start": 0.25, "distill_alpha": 0.0, "distill_T": 2.0},
    "shapes-vit": {"steps": 2400, "batch": 64, "max_lr": 1e-3, "weight_decay": 0.05, "label_smoothing": 0.1,
                   "pct_start": 0.15, "distill_alpha": 0.5, "distill_T": 2.0},
}


def to_tensor(images: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


@torch.no_grad()
def evaluate(model, n: int = 2000, seed: int = 0, image_size: int = 64) -> float:
    """Top-1 accuracy on ``n`` fresh images of the held-out "test" split (never used for training)."""
    model.eval()
    ds = ShapesWorld(ShapesConfig(), image_size).generate(n, seed=seed, split="test")
    correct = 0
    for i in range(0, n, 250):
        logits = model(to_tensor(ds.images[i:i + 250]))
        correct += int((logits.argmax(1).numpy() == ds.labels[i:i + 250]).sum())
    return correct / n


def train(name: str, out_dir: Path, seed: int = 0, steps: int | None = None, teacher_dir: Path | None = None,
          threads: int = 2, log=print, evaluate_n: int = 2000, batch: int | None = None) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    recipe = dict(RECIPES[name])
    if steps is not None:
        recipe["steps"] = steps
    if batch is not None:
        recipe["batch"] = batch
    arch = SHAPES_ARCHITECTURES[name]
    model = build_architecture(arch)
    teacher = None
    if recipe["distill_alpha"] > 0:
        if teacher_dir is None:
            raise SystemExit(f"{name} is distilled from the CNN: pass --teacher assets/models/shapes-cnn")
        from .registry import load_from_dir

        teacher = load_from_dir(teacher_dir)
        teacher.eval()
        teacher = teacher.to(memory_format=torch.channels_last)  # ~1.5x faster convolutions on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["max_lr"], weight_decay=recipe["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["max_lr"], total_steps=recipe["steps"],
                                                pct_start=recipe["pct_start"])
    world = ShapesWorld(ShapesConfig(), 64)
    t0 = time.time()
    alpha, T = recipe["distill_alpha"], recipe["distill_T"]
    for step in range(recipe["steps"]):
        model.train()
        batch = world.generate(recipe["batch"], seed=seed * 1_000_003 + step, split="train")
        x = to_tensor(batch.images)
        y = torch.from_numpy(batch.labels)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=recipe["label_smoothing"])
        if teacher is not None:
            with torch.inference_mode():
                t_logits = teacher(x.contiguous(memory_format=torch.channels_last)).clone()
            kd = F.kl_div(F.log_softmax(logits / T, 1), F.log_softmax(t_logits / T, 1), log_target=True,
                          reduction="batchmean") * T * T
            loss = (1 - alpha) * loss + alpha * kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == recipe["steps"] - 1:
            acc = (logits.argmax(1) == y).float().mean().item()
            log(f"step {step:5d}  loss {loss.item():.4f}  batch-acc {acc:.3f}  {time.time() - t0:7.1f}s")
    wall = time.time() - t0
    model.eval()
    acc = evaluate(model, n=evaluate_n)
    log(f"test accuracy {acc:.4f} on {evaluate_n} fresh test images; {wall / 60:.1f} min")
    card = {
        "name": name,
        "description": {
            "shapes-vit": "Vision Transformer (timm VisionTransformer, conv stem, 8x8 patch grid + CLS) for the Shapes world.",
            "shapes-cnn": "timm resnet10t CNN for the Shapes world.",
        }[name],
        "architecture": arch,
        "input_size": [3, 64, 64],
        "mean": list(MEAN),
        "std": list(STD),
        "class_names": list(ID_CLASSES),
        "test_accuracy": acc,
        "test_set": f"{evaluate_n} Shapes images, split 'test', seed 0, default mechanisms",
        "parameters": count_parameters(model),
        "training": {**recipe, "seed": seed, "optimizer": "AdamW", "schedule": "OneCycleLR",
                     "data": "fresh Shapes batches each step (split 'train')",
                     "teacher": "shapes-cnn" if teacher is not None else None,
                     "wall_minutes": round(wall / 60, 2), "threads": threads,
                     "torch": torch.__version__, "timm": timm.__version__, "machine": platform.machine(),
                     "script": "python -m core.models.train_zoo --model " + name
                               + (" --teacher assets/models/shapes-cnn" if teacher is not None else "")},
    }
    out = out_dir / name
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    (out / "card.json").write_text(json.dumps(card, indent=2))
    return card


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(RECIPES), required=True)
    p.add_argument("--out", type=Path, default=Path("assets/models"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--teacher", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    card = train(a.model, a.out, seed=a.seed, steps=a.steps, teacher_dir=a.teacher, threads=a.threads,
                 log=lambda s: print(s, flush=True))
    print(json.dumps({"model": card["name"], "test_accuracy": card["test_accuracy"]}))


if __name__ == "__main__":
    main()
