"""`fgvc validate`: evaluate a saved checkpoint on a dataset folder and write the same
files a run writes (predictions.csv, features.npz, row.json, ...), so a model trained
elsewhere, or a run evaluated on other data, can enter the report.

The evaluation is the run's own final step (`fgvc.train.predict` on the test split and on
the un-augmented train split, same transforms from the model's data config), so validating
a finished run folder on its own dataset reproduces its predictions.csv and features.npz.

Everything that can be wrong with the input (missing files, an unreadable checkpoint, one
for another architecture, class count or class list, a folder without a manifest) is an
FGVCError raised before any image is decoded.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
import yaml
from torch import Tensor, nn

from fgvc.errors import FGVCError

DEFAULT_BARE_OUT = Path("results") / "validate"
CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"


# --------------------------------------------------------------------------- inputs
def _full_name(model: str, pretrained: bool | str | None) -> str:
    """The timm name whose pretrained_cfg (mean, std, interpolation) the run trained with."""
    from timm.models import split_model_name_tag

    arch, tag = split_model_name_tag(model)
    if isinstance(pretrained, str) and pretrained and not tag:
        return f"{arch}.{pretrained}"
    return model


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _load_run_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict]:
    """The final weights of a run folder's checkpoint.pt (read with weights_only=True:
    a run folder may come from elsewhere)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # an interrupted run's checkpoint holds RNG state weights_only refuses
        raise FGVCError(f"cannot read {path} as a final fgvc checkpoint ({type(e).__name__}); if the run was "
                        "interrupted, finish it first (rerun the same benchmark/train command to resume)") from None
    if not (isinstance(ck, dict) and _is_state_dict(ck.get("model"))):
        raise FGVCError(f"{path} is not an fgvc checkpoint (no 'model' state dict); pass it as a bare "
                        "checkpoint file with --model NAME instead")
    if not ck.get("final"):
        raise FGVCError(f"{path} is the checkpoint of an unfinished run (epoch {ck.get('epoch', '?')}): "
                        "finish it first (rerun the same benchmark/train command to resume)")
    return ck["model"], dict(run_id=ck.get("run_id"), epoch=ck.get("epoch"))


def _load_bare_checkpoint(path: Path) -> dict[str, Tensor]:
    """A state dict, plain or under 'state_dict' / 'model' (safetensors too), via timm's
    reader (weights_only=True; strips DDP 'module.' prefixes)."""
    from timm.models import load_state_dict

    try:
        sd = load_state_dict(str(path), weights_only=True)
    except Exception as e:
        detail = str(e).splitlines()[0] if str(e) else ""
        raise FGVCError(f"cannot read checkpoint {path}: {type(e).__name__}: {detail} (expected a PyTorch state "
                        "dict, possibly under 'state_dict' or 'model', or a safetensors file)") from None
    if not _is_state_dict(sd):
        raise FGVCError(f"checkpoint {path} does not hold a state dict of tensors (expected a PyTorch state "
                        "dict, possibly under 'state_dict' or 'model', or a safetensors file)")
    return sd


def classifier_key(model: nn.Module) -> str:
    """State-dict key of the classifier's weight (`fc.weight` for resnets)."""
    clf = model.get_classifier()
    name = next((n for n, m in model.named_modules() if m is clf), None)
    return f"{name}.weight" if name else ""


def check_state_dict(sd: dict[str, Tensor], model: nn.Module, name: str, path: Path, data: Path) -> None:
    """Keys and shapes of `sd` against `model`; says which differ, and the class counts."""
    from fgvc.models import describe_mismatch

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    key = classifier_key(model)
    if key in sd and key in expected and sd[key].ndim == 2 and tuple(sd[key].shape)[1:] == expected[key][1:] \
            and sd[key].shape[0] != expected[key][0]:
        raise FGVCError(f"checkpoint {path} has {sd[key].shape[0]} classes ({key} {tuple(sd[key].shape)}) but "
                        f"dataset {data} has {expected[key][0]}: evaluate it on the dataset it was trained on")

    mismatch = describe_mismatch(sd, expected, source="checkpoint")
    if mismatch:
        raise FGVCError(f"checkpoint {path} does not match {name}: {mismatch}; "
                        "pass the model name the checkpoint was trained with (--model NAME)")


def _check_classes(run_dir: Path, classes: list[str], data: Path) -> None:
    """Same count is not enough: label k must name the same class in both."""
    from fgvc.report.load import read_classes

    saved = read_classes(run_dir)
    if saved is None or saved == classes:
        return
    if len(saved) != len(classes):
        raise FGVCError(f"run {run_dir} was trained on {len(saved)} classes but dataset {data} has {len(classes)}: "
                        "evaluate it on the dataset it was trained on")
    k = next(i for i, (a, b) in enumerate(zip(saved, classes)) if a != b)
    raise FGVCError(f"run {run_dir} was trained on other classes than dataset {data}: label {k} is {saved[k]!r} "
                    f"in the run's classes.json but {classes[k]!r} in the dataset")


def _trained_on(run_dir: Path | None, source: Path) -> Path:
    from fgvc.report.load import read_provenance

    where = read_provenance(run_dir).get("dataset") if run_dir is not None else None
    if not where:
        raise FGVCError(f"no dataset given for {source}: pass --data DIR (a prepared dataset folder)")
    return Path(where)


def default_out(source: Path) -> Path:
    """`<run folder>/validate/`, or `results/validate/<checkpoint stem>/` for a bare file."""
    source = Path(source)
    return source / "validate" if source.is_dir() else DEFAULT_BARE_OUT / source.stem


# --------------------------------------------------------------------------- main
def validate(source: Path, data: Path | None, out: Path | None = None, *, model: str | None = None,
             device: str = "auto", image_size: int | None = None, crop_pct: float | None = None,
             workers: int | None = None, progress: bool = True,
             log: Callable[[str], None] | None = None) -> Path:
    """Evaluate the checkpoint of a run folder (or a bare checkpoint file with `model`) on
    the dataset folder `data`; write the run's result files into `out`; return `out`.

    `data` None: the dataset the run was trained on (its provenance.json), run folders only.
    Image size and crop come from the run's config.yaml (for a bare file: the model's
    pretrained input size and crop 0.875, the training defaults) unless given.
    """
    from fgvc.config import RunConfig, load_config
    from fgvc.data import load_dataset_info
    from fgvc.models import build_model, data_config, sha256_file
    from fgvc.train import read_row, resolve_device

    say = log or (lambda m: None)
    source = Path(source)
    dev = resolve_device(device)
    if not source.exists():
        raise FGVCError(f"checkpoint or run folder not found: {source}")
    run_dir: Path | None = source if source.is_dir() else None
    source_row: dict | None = None
    if run_dir is not None:
        for f in (CONFIG, CHECKPOINT):
            if not (run_dir / f).is_file():
                raise FGVCError(f"{run_dir} has no {f}: not a finished run folder (a run writes {CONFIG} and "
                                f"{CHECKPOINT}); pass a run folder or a checkpoint file with --model NAME")
        try:
            cfg = load_config(run_dir / CONFIG)
        except yaml.YAMLError as e:
            raise FGVCError(f"{run_dir / CONFIG}: not valid YAML ({e})") from None
        if model is not None and model != cfg.model:
            raise FGVCError(f"--model {model} differs from {cfg.model} in {run_dir / CONFIG}: --model is only "
                            "for bare checkpoint files")
        ckpt_path = run_dir / CHECKPOINT
        name = _full_name(cfg.model, cfg.pretrained)
        source_row = read_row(run_dir)
    else:
        if not model:
            raise FGVCError(f"{source} is a checkpoint file: name its architecture with --model NAME "
                            "(a timm model name, e.g. resnet50.tv_in1k)")
        ckpt_path, name = source, model
        cfg = RunConfig(benchmark="validate", model=model, pretrained=False)

    out = Path(out) if out is not None else default_out(source)
    if run_dir is not None and out.resolve() == run_dir.resolve():
        raise FGVCError(f"--out {out} is the run folder itself: its own results would be overwritten; "
                        "choose another folder (default: <run folder>/validate)")
    if data is None:
        data = _trained_on(run_dir, source)
    data = Path(data)
    info = load_dataset_info(data)
    if run_dir is not None:
        _check_classes(run_dir, info.classes, data)
        sd, ck_meta = _load_run_checkpoint(ckpt_path)
    else:
        sd, ck_meta = _load_bare_checkpoint(ckpt_path), {}
    net = build_model(name, info.num_classes, pretrained=False, seed=cfg.seed)
    check_state_dict(sd, net, name, ckpt_path, data)
    own = net.state_dict()
    sd = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **sd}
    net.load_state_dict(sd)

    dcfg = data_config(net)
    if image_size is None:
        image_size = cfg.image_size if run_dir is not None else int(dcfg["input_size"][-1])
    if crop_pct is None:
        crop_pct = cfg.crop_pct
    if image_size < 1 or not 0 < crop_pct <= 1:
        raise FGVCError(f"invalid image size {image_size} / crop_pct {crop_pct}: need size >= 1, crop in (0, 1]")
    _evaluate_into(net, cfg, info, out, ckpt_path=ckpt_path, ck_meta=ck_meta, run_dir=run_dir,
                   source_row=source_row, name=name, image_size=image_size, crop_pct=crop_pct,
                   device=dev, workers=workers, progress=progress, dcfg=dcfg, sha=sha256_file(ckpt_path))
    say(f"validated {ckpt_path} on {info.root} -> {out}")
    return out


def _evaluate_into(net, cfg, info, out: Path, *, ckpt_path, ck_meta, run_dir, source_row, name, image_size,
                   crop_pct, device: torch.device, workers, progress, dcfg, sha) -> None:
    from fgvc.config import save_config
    from fgvc.data import decode_all, default_workers, eval_loader, eval_resize_crop, normalize
    from fgvc.io import atomic_write_json, atomic_write_text
    from fgvc.train import ROW_COLUMNS, RunOptions, accuracy_metrics, predict, provenance, write_features, \
        write_predictions

    net = net.to(device, memory_format=torch.channels_last)
    workers = default_workers(device) if workers is None else workers
    resize_crop = eval_resize_crop(image_size, crop_pct, dcfg["interpolation"])
    norm = normalize(dcfg["mean"], dcfg["std"])
    eval_bs = max(cfg.batch_size, 64) if run_dir is not None else 64  # the run's own eval batch
    pin = device.type == "cuda"
    outs = {}
    frames = {}
    for split, is_train in (("test", False), ("train", True)):
        df = info.split(is_train)
        loader = eval_loader(decode_all(info, df), df.label.to_numpy(), resize_crop, norm, eval_bs, workers, pin)
        outs[split] = predict(net, loader, device, desc=f"{split} features", progress=progress)
        frames[split] = df
    final = accuracy_metrics(outs["test"]["probs"], outs["test"]["labels"])

    winfo = dict(weights=ckpt_path.name, weights_source=str(ckpt_path.resolve()), weights_sha256=sha)
    prov = provenance(cfg, RunOptions(data=info.root, out=out), info, device, winfo)
    source_prov = {}
    if run_dir is not None and (run_dir / "provenance.json").is_file():
        from fgvc.report.load import read_provenance

        source_prov = read_provenance(run_dir)
    prov.update(model=name, command="validate", checkpoint=str(ckpt_path.resolve()), checkpoint_sha256=sha,
                source_run=str(run_dir.resolve()) if run_dir is not None else None,
                source_run_id=ck_meta.get("run_id"), source_epoch=ck_meta.get("epoch"),
                source_dataset_content_sha256=source_prov.get("dataset_content_sha256"),
                source_git_commit=source_prov.get("git_commit"), image_size=image_size, crop_pct=crop_pct,
                workers=workers, finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    test_ids = frames["test"].image_id.to_numpy()
    write_predictions(out / "predictions.csv", test_ids, outs["test"]["labels"], outs["test"]["probs"])
    write_features(out / "features.npz", outs["test"], test_ids, outs["train"], frames["train"].image_id.to_numpy())
    metrics = dict(top1=final["top1"], top5=final["top5"], mean_class_acc=final["mean_class_acc"],
                   num_test=len(test_ids), num_train=len(frames["train"]), data=str(info.root),
                   dataset_content_sha256=info.content_sha256, checkpoint=str(ckpt_path))
    atomic_write_json(out / "metrics.json", metrics)
    if run_dir is not None:
        save_config(cfg, out / CONFIG)
    else:
        known = dict(benchmark=cfg.benchmark, model=name, image_size=image_size, crop_pct=crop_pct)
        atomic_write_text(out / CONFIG, "# fgvc validate of a bare checkpoint: its training settings are unknown\n"
                          + yaml.safe_dump(known, sort_keys=False))
    atomic_write_json(out / "classes.json", info.classes)

    # row.json: the source run's row (training facts) with this evaluation's metrics.
    row = {c: None for c in ROW_COLUMNS}
    if source_row:
        row.update(source_row)
    else:
        row.update(benchmark=cfg.benchmark, model=name, weights=ckpt_path.name, weights_sha256=sha,
                   method="external", image_size=image_size)
    # Inside a benchmark's runs/ folder the row's run_id must be the folder name (the report
    # finds run folders by run_id); elsewhere it names what was evaluated.
    run_id = out.name if out.parent.name == "runs" else (ck_meta.get("run_id") or ckpt_path.stem)
    row.update(run_id=run_id, top1=final["top1"], top5=final["top5"], mean_class_acc=final["mean_class_acc"],
               best_epoch_top1=None, device=prov["device"], git_commit=prov["git_commit"], status="ok", error="",
               evaluated_data=str(info.root), evaluated_checkpoint=str(ckpt_path))
    atomic_write_json(out / "row.json", row)
    atomic_write_json(out / "provenance.json", prov)
    if out.parent.name == "runs":  # so `fgvc report <benchmark>` sees it at once
        from fgvc.benchmark import rebuild_runs_csv

        rebuild_runs_csv(out.parent.parent)


__all__ = ["validate", "check_state_dict", "classifier_key", "default_out"]
