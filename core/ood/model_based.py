"""Detectors that re-run the model on its inputs: ODIN."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from core.extract import ModelOutputs

from .base import Detector, OODError, ParamSpec, register


@register("odin", "ODIN", "model", {"model", "inputs"},
          "Liang, Li & Srikant, Enhancing The Reliability of Out-of-distribution Image Detection in Neural Networks, "
          "ICLR 2018",
          params=(ParamSpec("temperature", 1000.0, "float", "Temperature T of the softmax.", low=1e-3, high=1e5, log=True),
                  ParamSpec("epsilon", 0.0014, "float", "Perturbation size ε in [0, 1] pixel units.", low=0.0, high=0.1),
                  ParamSpec("batch_size", 64, "int", "Images per forward/backward pass.", low=1, high=4096)),
          slow="it runs the network forward, backward and forward again on every image of every set (about half "
               "of a full run's time on 2 cores)")
class ODIN(Detector):
    """**ODIN: temperature scaling and input perturbation.** score = max_c softmax(f(x̃)/T)_c with
    x̃ = x − ε·sign(∇ₓ CE(f(x)/T, ŷ)) / σ.

    The perturbation moves the image in the direction that increases the (tempered) confidence of
    its own prediction ŷ; ID images gain more than OOD ones. ε is in [0, 1]-pixel units, so the
    step on the normalised input is divided per channel by the normalisation std σ (taken from the
    model card, or ``input_std=``). Defaults T = 1000, ε = 0.0014.
    Needs the model and the preprocessed input images: ``det.score(outputs, inputs=x)`` with
    ``x`` a float tensor [N, 3, H, W] (or an iterable of such batches).
    Liang, Li & Srikant, ICLR 2018.
    """

    _extra_kwargs = ("input_std",)

    def _validate_params(self):
        if self.model is None:
            raise OODError("ODIN re-runs the model on perturbed inputs: pass the torch model, "
                           "core.ood.create('odin', model=model).")
        if not isinstance(self.model, torch.nn.Module):
            raise OODError(f"ODIN needs a torch model (torch.nn.Module), got {type(self.model).__name__}.")
        std = self.extra.get("input_std")
        if std is None:
            std = getattr(self.model, "card", {}).get("std") if isinstance(getattr(self.model, "card", None), dict) else None
        self.std_ = None if std is None else torch.as_tensor(np.asarray(std, np.float32)).view(1, -1, 1, 1)
        self.info["input_std"] = None if std is None else [float(s) for s in np.ravel(std)]

    def _check(self, outputs, stage):  # ODIN reads no arrays from the outputs
        if outputs is not None and not isinstance(outputs, ModelOutputs):
            raise OODError(f"ODIN: {stage} expects ModelOutputs or None, got {type(outputs).__name__}.")

    def fit(self, outputs: ModelOutputs | None = None) -> ODIN:
        """Nothing to learn; kept for the common interface."""
        self._check(outputs, "fit")
        self.fitted = True
        return self

    def score(self, outputs: ModelOutputs | None = None, *, inputs=None,
              progress: Callable[[float, str], None] | None = None) -> np.ndarray:
        """ODIN scores of ``inputs``; ``outputs`` (optional) only checks that the sample counts agree."""
        self._check(outputs, "score")
        if inputs is None:
            raise OODError("ODIN needs the input images: call score(outputs, inputs=x) with the preprocessed "
                           "images x [N, 3, H, W] that produced the outputs.")
        scores = self.score_inputs(inputs, progress=progress)
        if outputs is not None and len(outputs) != len(scores):
            raise OODError(f"ODIN: got {len(scores)} input images for {len(outputs)} model outputs; they must match.")
        return scores

    def score_inputs(self, inputs, progress: Callable[[float, str], None] | None = None) -> np.ndarray:
        """ODIN scores of a tensor [N, C, H, W] (or an iterable of batches) of preprocessed images."""
        total = len(inputs) if isinstance(inputs, (torch.Tensor, np.ndarray)) else None
        self.model.eval()
        out, done = [], 0
        # only ∇ₓ is needed: freezing the weights for the duration keeps autograd from recording them (~10% faster)
        params = [q for q in self.model.parameters() if q.requires_grad]
        for q in params:
            q.requires_grad_(False)
        try:
            for x in _batches(inputs, self.params["batch_size"]):  # streamed: one batch in memory at a time
                try:
                    out.append(self._score_batch(x))
                except (RuntimeError, AssertionError) as exc:  # shape/dtype mismatches (timm asserts image sizes)
                    raise OODError(f"ODIN: the model could not run on input images of shape {tuple(x.shape)} "
                                   f"({exc}).") from None
                done += len(x)
                if progress is not None:
                    progress(done / total if total else 0.0, f"ODIN {done} images")
        finally:
            for q in params:
                q.requires_grad_(True)
        if done == 0:
            raise OODError("ODIN: no input images to score.")
        return np.concatenate(out).astype(np.float64)

    def _score_batch(self, x: torch.Tensor) -> np.ndarray:
        t, eps = self.params["temperature"], self.params["epsilon"]
        x = x.detach().float().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = _logits(self.model(x))
            if not torch.isfinite(logits).all():
                raise OODError("ODIN: the model produced NaN or inf logits on these inputs.")
            loss = torch.nn.functional.cross_entropy(logits / t, logits.argmax(1), reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        # the authors' sign: >= 0 -> +1, < 0 -> -1 (a zero gradient still moves the pixel)
        step = torch.where(grad >= 0, 1.0, -1.0)
        if self.std_ is not None:
            if self.std_.shape[1] != x.shape[1]:
                raise OODError(f"ODIN: input_std has {self.std_.shape[1]} channels but the inputs have {x.shape[1]}.")
            step = step / self.std_
        with torch.no_grad():
            perturbed = _logits(self.model(x.detach() - eps * step))
            return torch.softmax(perturbed.double() / t, dim=1).max(1).values.numpy()


def _logits(out) -> torch.Tensor:
    if isinstance(out, (tuple, list)):  # models returning (logits, ...) or (features, logits) are not supported
        raise OODError("ODIN expects model(x) to return a logits tensor [N, C].")
    if out.ndim != 2:
        raise OODError(f"ODIN expects model(x) to return logits [N, C], got shape {tuple(out.shape)}.")
    return out


def _batches(inputs, batch_size: int) -> Iterable[torch.Tensor]:
    if callable(inputs) and not isinstance(inputs, torch.Tensor):
        inputs = inputs()
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if isinstance(inputs, torch.Tensor):
        if inputs.ndim != 4:
            raise OODError(f"ODIN expects input images [N, C, H, W], got shape {tuple(inputs.shape)}.")
        if not torch.isfinite(inputs).all():
            raise OODError("ODIN: the input images contain NaN or inf.")
        for s in range(0, len(inputs), batch_size):
            yield inputs[s:s + batch_size]
        return
    for batch in inputs:
        if isinstance(batch, (tuple, list)):  # (images, labels) batches from a DataLoader
            batch = batch[0]
        batch = torch.as_tensor(batch)
        if batch.ndim != 4:
            raise OODError(f"ODIN expects batches of images [B, C, H, W], got shape {tuple(batch.shape)}.")
        if not torch.isfinite(batch).all():
            raise OODError("ODIN: the input images contain NaN or inf.")
        yield batch
