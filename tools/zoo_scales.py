"""How hard each auxiliary loss pulls on the features next to CE: where to centre its λ grid (issue 27).

    python tools/zoo_scales.py --pretrained-file ../shared/weights/tf_efficientnet_lite0.in1k.safetensors

The loss zoo gives every method three values of its weight λ. Their losses differ in scale by
orders of magnitude (ArcFace's scaled logits against a confusion term bounded by 2), so one
λ grid for all would favour some; three values around each method's own scale keep the
footing equal. The scale measured here: train CE for --epochs on the sweeps' training split
(val_fraction 0.2, val_seed 0; the validation and test images are not read), then over
--batches training batches, with the model in eval mode, compare for every registered loss
at its defaults the gradient its unweighted value sends to the pooled features (through the
classifier for the losses on the logits) with the gradient of CE. `lam_grad` = ‖∇CE‖ / ‖∇L‖
(means over the batches) is the λ at which the weighted term pulls as hard as CE does; `grid`
is the value of the 1-3-10 series nearest to it with its two neighbours (center loss's
0.003 / 0.01 / 0.03 of the fair sweep is such a grid). `lam_value` = CE / L compares values
instead. A heuristic for where to look, not a tuned result: the sweep over the grid decides.
Writes OUT/zoo-scales.csv and a provenance JSON beside it.

Losses with parameters of their own (learned centres, ArcFace's class weights) start them at
random, far from the features, so their first pull says little about the rest of training.
`--warm` trains those parameters during the CE epochs, each by its own optimizer on its own
unweighted loss with the features detached (the trunk still learns from CE alone), so the
measurement is taken once they have caught up with the features.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

SERIES = (1.0, 3.0)  # the 1-3-10 series: ..., 0.01, 0.03, 0.1, 0.3, ...
COLUMNS = ["method", "inputs", "value", "ce_value", "grad_norm", "ce_grad_norm", "lam_value", "lam_grad", "grid",
           "batches", "note"]


def series_grid(lam: float) -> list[float]:
    """The value of the 1-3-10 series nearest to `lam` (on a log scale) with its two neighbours."""
    if not (math.isfinite(lam) and lam > 0):
        return []
    values = sorted(m * 10.0**e for e in range(math.floor(math.log10(lam)) - 2, math.floor(math.log10(lam)) + 3)
                    for m in SERIES)
    i = min(range(1, len(values) - 1), key=lambda j: abs(math.log10(values[j] / lam)))
    return [float(f"{v:.3g}") for v in values[i - 1:i + 2]]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/cub_sparrows", help="prepared dataset folder")
    p.add_argument("--model", default="tf_efficientnet_lite0", help="timm model name")
    p.add_argument("--pretrained-file", default=None, help="local weights for --model (else timm's download)")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random init (tests)")
    p.add_argument("--image-size", type=int, default=224, help="training crop in pixels")
    p.add_argument("--batch-size", type=int, default=32, help="training batch (the zoo's)")
    p.add_argument("--lr", type=float, default=0.01, help="CE's lr for the --epochs before measuring")
    p.add_argument("--epochs", type=int, default=3,
                   help="CE epochs before measuring (the head is random at 0, near chance after 1)")
    p.add_argument("--batches", type=int, default=8, help="training batches measured")
    p.add_argument("--methods", default=None, help="comma-separated losses (default: every registered one)")
    p.add_argument("--center-lr", type=float, default=None,
                   help="the learned centres' own lr (center_lr; default: RunConfig's)")
    p.add_argument("--warm", action="store_true",
                   help="train the losses' own parameters (centres, class weights) during the CE epochs")
    p.add_argument("--out", default="results/zoo-scales", help="output folder")
    return p.parse_args(argv)


class _Optimizers:
    """Several losses' own optimizers stepped as one (the loop carries one per auxiliary term)."""

    def __init__(self, optimizers: list) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()


def warm_term(losses: dict):
    """An auxiliary term for fgvc.engine.loop.train_one_epoch that trains the parameters of every
    feature loss that has its own optimizer, on its unweighted value with the features detached,
    and adds nothing to the loss the trunk sees: its value is L - L.detach() = 0, its gradient
    reaches only the losses' own parameters. Their `before_step`/`after_step` run as in training
    (λ = 1 here, so undoing λ changes nothing). None when no loss has parameters to warm."""
    import torch
    from torch import nn

    from fgvc.engine.loop import AuxTerm

    own = {name: (loss, loss.make_optimizer()) for name, loss in losses.items()
           if getattr(loss, "inputs", "features") == "features"}
    own = {name: pair for name, pair in own.items() if pair[1] is not None}
    if not own:
        return None

    class Warm(nn.Module):
        weight = 1.0
        inputs = "features"

        def forward(self, features, labels):
            total = sum(loss(features.detach(), labels) for loss, _ in own.values())
            return total - total.detach()

        def before_step(self) -> None:
            for loss, _ in own.values():
                loss.before_step()

        def after_step(self, features, labels) -> None:
            for loss, _ in own.values():
                loss.after_step(features, labels)

    print(f"warming the own parameters of: {', '.join(own)}", flush=True)
    return AuxTerm(Warm(), _Optimizers([o for _, o in own.values()]))


def measure(args, info) -> tuple[list[dict], dict]:
    """The table's rows, and the weights' provenance (fgvc.models.weights_info, hashed once)."""
    import torch
    import torch.nn.functional as F

    from fgvc.config import RunConfig
    from fgvc.data.dataset import stratified_val_split
    from fgvc.data.loaders import build_loaders
    from fgvc.engine.device import configure_backends, place_model
    from fgvc.engine.loop import train_one_epoch
    from fgvc.losses.registry import build_aux_loss, registered_losses
    from fgvc.models import WithFeatures, load_backbone

    device = torch.device("cpu")
    configure_backends(device, deterministic=False)
    cfg = RunConfig(model=args.model, pretrained=args.pretrained, batch_size=args.batch_size,
                    image_size=args.image_size, lr=args.lr, epochs=max(args.epochs, 1), val_fraction=0.2).validate()
    train, _ = stratified_val_split(info.split(True), cfg.val_fraction, cfg.val_seed)
    backbone = load_backbone(cfg.model, info.num_classes, pretrained=cfg.pretrained,
                             pretrained_file=args.pretrained_file, seed=cfg.seed)
    model = place_model(backbone.model, device, precision="fp32")
    data = build_loaders(cfg, info, {"train": train, "test": info.split(False), "val": None}, backbone.data_config,
                         device, pipeline="per-sample", workers=0)
    net = WithFeatures(model)
    methods = args.methods.split(",") if args.methods else registered_losses()
    losses = {}
    for name in methods:
        own = dataclasses.replace(cfg, method=name, center_weight=1.0,  # unweighted: λ is what we look for
                                  **({} if args.center_lr is None else {"center_lr": args.center_lr})).validate()
        losses[name] = build_aux_loss(own, info.num_classes, backbone.feature_dim).to(device)
    warm = warm_term(losses) if args.warm else None
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    for epoch in range(args.epochs):
        data.set_epoch(epoch)
        stats = train_one_epoch(net, warm, opt, data.train, device, precision="fp32", progress=False)
        print(f"CE epoch {epoch + 1}/{args.epochs}: train top1 {stats['train_top1']:.1f}", flush=True)
    model.eval()
    head = model.get_classifier()
    sums = {name: [0.0, 0.0] for name in ["ce", *methods]}  # value, gradient norm
    data.set_epoch(args.epochs)
    n = 0
    for x, y in data.train:
        if n == args.batches:
            break
        with torch.no_grad():
            _, feats = net(x.to(device))
        f = feats.detach().float().requires_grad_()
        logits = head(f)
        for name in ["ce", *methods]:
            if name == "ce":
                value = F.cross_entropy(logits, y)
            else:
                value = losses[name](logits if getattr(losses[name], "inputs", "features") == "logits" else f, y)
            (grad,) = torch.autograd.grad(value, f, retain_graph=True, allow_unused=True)
            sums[name][0] += float(value.detach())
            sums[name][1] += float(grad.norm()) if grad is not None else 0.0
        n += 1
    ce_value, ce_grad = (s / n for s in sums["ce"])
    rows = []
    for name in methods:
        value, grad = (s / n for s in sums[name])
        lam_grad = ce_grad / grad if grad > 0 else math.nan
        rows.append(dict(method=name, inputs=getattr(losses[name], "inputs", "features"), value=round(value, 6),
                         ce_value=round(ce_value, 6), grad_norm=round(grad, 8), ce_grad_norm=round(ce_grad, 8),
                         lam_value=round(ce_value / value, 6) if value > 0 else math.nan,
                         lam_grad=round(lam_grad, 6), grid=" ".join(f"{v:g}" for v in series_grid(lam_grad)),
                         batches=n, note="" if grad > 0 else "no gradient on these batches"))
    return rows, backbone.weights


def main(argv: list[str]) -> int:
    import pandas as pd
    import torch

    from fgvc.data.dataset import load_dataset_info
    from fgvc.engine.provenance import git_state, measurement_provenance
    from fgvc.errors import FGVCError
    from fgvc.io import atomic_path, atomic_write_json

    args = parse(argv)
    if args.epochs < 0 or args.batches < 1:
        raise SystemExit("zoo_scales.py: --epochs must be >= 0 and --batches >= 1")
    code = git_state()  # the code that measures: a commit made meanwhile is not it
    try:
        info = load_dataset_info(args.data)
        rows, winfo = measure(args, info)
    except FGVCError as e:  # a bad --data, --methods or weights file: one line, nothing written
        raise SystemExit(f"zoo_scales.py: {e}") from None
    table = pd.DataFrame(rows, columns=COLUMNS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "zoo-scales.csv") as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_json(out / "zoo-scales.json", measurement_provenance(args.model, winfo, info, torch.device("cpu"),
                                                                      vars(args), code))
    print(table.drop(columns=["note"]).to_string(index=False))
    print(f"wrote zoo-scales.csv and zoo-scales.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
