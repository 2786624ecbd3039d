"""Benchmark core.attribution against Captum on the shipped ViT, interleaved in one process.

    python benchmarks/attribution.py                 # 16 images, 3 rounds, torch's thread count
    python benchmarks/attribution.py --threads 1     # one torch thread (faster on a busy shared machine)
    python benchmarks/attribution.py --quick         # 4 images, 1 round, smaller RISE: a smoke run

For 16 Shapes test images on ``shapes-vit`` each method runs here and through Captum on the same
inputs and targets (the predicted classes), alternating ours / reference in every round; the table
gives the median seconds of each and their ratio (reference / ours: above 1 means ours is faster).

* Integrated Gradients, 50 steps, Gauss–Legendre, zero baseline: Captum ``IntegratedGradients``;
  the maps must agree within 1e-4 relative (max |ours − Captum| / max |Captum|).
* SmoothGrad, 25 samples, σ = 0.15 of the pixel range: Captum ``NoiseTunnel(Saliency, abs=False)``.
  The noise differs, so agreement is statistical: the relative error between ours and Captum must
  not exceed 1.5 × the error between two Captum runs with different seeds (the Monte Carlo floor).
* Occlusion, 8×8 windows, stride 8, zero baseline: Captum ``Occlusion``; exact agreement (1e-4).
* RISE, 500 masks, 7×7 grid, p = ½: captum-rise (``rise.RISE``, a FeatureAblation subclass; Captum
  itself has no RISE), given the softmax of the model (it weighs masks by whatever the forward
  returns; the paper uses the class probability). Its map is the paper's without the 1/p factor,
  its masks use ``align_corners=True`` and shifts up to 16 pixels (coarser masks than the paper's,
  so the two estimate slightly different maps), and it runs one forward pass per mask over the 16
  images. Two Monte Carlo estimates correlate less the noisier they are, so the check is the
  correlation corrected for attenuation, r(ours, ref) / √(r(ours, ours′)·r(ref, ref′)), with two
  runs of each at different seeds (≥ 0.8: the same map up to noise and the mask-scale difference).

Then the target on its own: RISE with 2,000 masks on one 64×64 image (must stay under 5 s).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core import attribution as A  # noqa: E402
from core import data, models  # noqa: E402
from core.extract import preprocess  # noqa: E402


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rise-masks", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.images, args.rounds, args.rise_masks = 4, 1, 100
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency

    try:
        from rise import RISE as CaptumRISE
    except ImportError:  # captum-rise is a dev requirement; without it RISE has no reference
        CaptumRISE = None

    model = models.load("shapes-vit")
    for p in model.parameters():  # neither side needs weight gradients
        p.requires_grad_(False)
    ds = data.load("shapes", n=args.images, seed=0, split="test")
    x = preprocess(ds.images, model.card)
    with torch.no_grad():
        targets = model(x).argmax(1)
    t_list = targets.tolist()
    sigma = 0.15 * 4.0  # the pixel range in input space is 1/std = 4 for the shipped models

    def ours_ig():
        return A.attribute(model, x, t_list, "integrated-gradients", steps=50, rule="gausslegendre", baseline="zero")

    def ref_ig():
        return IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=targets, n_steps=50,
                                                    method="gausslegendre").detach().numpy()

    def ours_sg(seed=0):
        return A.attribute(model, x, t_list, "smoothgrad", samples=25, noise_level=0.15, seed=seed)

    def ref_sg(seed=0):
        torch.manual_seed(seed)
        return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=25, stdevs=sigma, target=targets,
                                                      abs=False).detach().numpy()

    def ours_occ():
        return A.attribute(model, x, t_list, "occlusion", patch=8, stride=8, baseline="zero")

    def ref_occ():
        return Occlusion(model).attribute(x, target=targets, sliding_window_shapes=(3, 8, 8), strides=(3, 8, 8),
                                          baselines=0).detach().numpy()

    def ours_rise(seed=0):
        return A.attribute(model, x, t_list, "rise", masks=args.rise_masks, grid=7, p=0.5, centre=False, seed=seed)

    def probabilities(inputs):  # RISE weighs masks by the class probability; captum-rise uses what forward returns
        return model(inputs).softmax(1)

    def ref_rise(seed=0):
        torch.manual_seed(seed)
        with torch.no_grad():
            return CaptumRISE(probabilities).attribute(x, n_masks=args.rise_masks, initial_mask_shapes=((7, 7),),
                                                       target=targets).detach().numpy()

    cases = [("Integrated Gradients (50 steps)", ours_ig, ref_ig), ("SmoothGrad (25 samples)", ours_sg, ref_sg),
             ("Occlusion (8×8, stride 8)", ours_occ, ref_occ)]
    if CaptumRISE is not None:
        cases.append((f"RISE ({args.rise_masks} masks)", ours_rise, ref_rise))
    times = {name: ([], []) for name, *_ in cases}
    results = {}
    one = x[:1]
    A.attribute(model, one, None, "rise", masks=64)  # warm up
    rise_one = []
    for r in range(args.rounds):
        for name, ours, ref in cases:
            for k, fn in enumerate((ours, ref)) if r % 2 == 0 else list(enumerate((ours, ref)))[::-1]:
                t0 = time.perf_counter()
                out = fn()
                times[name][k].append(time.perf_counter() - t0)
                results[(name, k)] = out
        t0 = time.perf_counter()  # the 5-second target, measured in every round under the same load
        A.attribute(model, one, None, "rise", masks=2000)
        rise_one.append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    # agreement
    checks = {}
    name = cases[0][0]
    checks[name] = (f"max rel. error {rel_err(results[(name, 0)], results[(name, 1)]):.1e}",
                    rel_err(results[(name, 0)], results[(name, 1)]) <= 1e-4)
    name = cases[1][0]
    floor = rel_l2(ref_sg(seed=1), results[(name, 1)])
    err = rel_l2(results[(name, 0)], results[(name, 1)])
    checks[name] = (f"rel. L2 {err:.3f} vs Captum-vs-Captum {floor:.3f}", err <= 1.5 * floor)
    name = cases[2][0]
    checks[name] = (f"max rel. error {rel_err(results[(name, 0)], results[(name, 1)]):.1e}",
                    rel_err(results[(name, 0)], results[(name, 1)]) <= 1e-4)
    if CaptumRISE is not None:
        name = cases[3][0]
        def maps(a):
            return a[:, 0] if a.ndim == 4 else a

        def r(a, b):
            return float(np.mean([pearson(a[i], b[i]) for i in range(len(x))]))

        ours_a, ours_b = maps(results[(name, 0)]), maps(ours_rise(seed=1))
        ref_a, ref_b = maps(results[(name, 1)]), maps(ref_rise(seed=1))
        r_or, r_oo, r_rr = r(ours_a, ref_a), r(ours_a, ours_b), r(ref_a, ref_b)
        corrected = r_or / np.sqrt(r_oo * r_rr)
        checks[name] = (f"r {r_or:.2f}; ours-ours {r_oo:.2f}, ref-ref {r_rr:.2f}; corrected {corrected:.2f}",
                        corrected >= 0.8)

    print(f"\nshapes-vit, {len(x)} images of 64×64, torch threads {torch.get_num_threads()}, "
          f"median of {args.rounds} interleaved rounds\n")
    print("| method | ours (s) | Captum (s) | Captum / ours | agreement | ok |")
    print("|---|---:|---:|---:|---|---|")
    for name, *_ in cases:
        a, b = np.median(times[name][0]), np.median(times[name][1])
        text, ok = checks[name]
        print(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.2f} | {text} | {'yes' if ok else 'NO'} |")

    print(f"\nRISE, 2,000 masks on one 64×64 image: {np.median(rise_one):.2f} s (median of {args.rounds}, one per round; "
          f"range {min(rise_one):.2f}-{max(rise_one):.2f} s; target < 5 s)")


if __name__ == "__main__":
    main()
