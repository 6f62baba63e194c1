"""`fgvc validate`: evaluate a saved checkpoint on a dataset folder and write the same
files a run writes (predictions.csv, features.npz, row.json, ...), so a model trained
elsewhere, or a run evaluated on other data, can enter the report.

The evaluation is the run's own final step (`fgvc.engine.loop.predict` on the test split and on
the un-augmented train split, same transforms from the model's data config), so validating
a finished run folder on its own dataset reproduces its predictions.csv and features.npz.

Everything that can be wrong with the input (missing files, an unreadable checkpoint, one
for another architecture, class count or class list, a folder without a manifest) is an
FGVCError raised before any image is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml
from torch import Tensor, nn

from fgvc.cli.defaults import VALIDATE_BARE_OUT
from fgvc.engine.checkpoint import CHECKPOINT
from fgvc.errors import FGVCError

CONFIG = "config.yaml"


# --------------------------------------------------------------------------- inputs
def _full_name(model: str, pretrained: bool | str | None) -> str:
    """The timm name whose pretrained_cfg (mean, std, interpolation) the run trained with."""
    from timm.models import split_model_name_tag

    arch, tag = split_model_name_tag(model)
    if isinstance(pretrained, str) and pretrained and not tag:
        return f"{arch}.{pretrained}"
    return model


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
    from fgvc.runs.read import read_classes

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
    from fgvc.runs.read import read_provenance

    where = read_provenance(run_dir).get("dataset") if run_dir is not None else None
    if not where:
        raise FGVCError(f"no dataset given for {source}: pass --data DIR (a prepared dataset folder)")
    return Path(where)


def validate_out(source: Path) -> Path:
    """`<run folder>/validate/`, or `results/validate/<checkpoint stem>/` for a bare file."""
    source = Path(source)
    return source / "validate" if source.is_dir() else VALIDATE_BARE_OUT / source.stem


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
    from fgvc.data.dataset import load_dataset_info
    from fgvc.engine.device import resolve_device
    from fgvc.models import data_config, sha256_file

    source = Path(source)
    dev = resolve_device(device)
    src = _read_source(source, model)
    out = Path(out) if out is not None else validate_out(source)
    if src.run_dir is not None and out.resolve() == src.run_dir.resolve():
        raise FGVCError(f"--out {out} is the run folder itself: its own results would be overwritten; "
                        "choose another folder (default: <run folder>/validate)")
    data = Path(data) if data is not None else _trained_on(src.run_dir, source)
    info = load_dataset_info(data)
    net, ck_meta = _load_model(src, info, data)
    dcfg = data_config(net)
    if image_size is None:
        image_size = src.cfg.image_size if src.run_dir is not None else int(dcfg["input_size"][-1])
    if crop_pct is None:
        crop_pct = src.cfg.crop_pct
    if image_size < 1 or not 0 < crop_pct <= 1:
        raise FGVCError(f"invalid image size {image_size} / crop_pct {crop_pct}: need size >= 1, crop in (0, 1]")
    view = dict(image_size=image_size, crop_pct=crop_pct, workers=workers, dcfg=dcfg,
                precision=eval_precision(src.run_dir, dev))
    outs = _predict_splits(net, src.cfg, info, dev, view, progress)
    _write_results(outs, src, info, out, dev, view, ck_meta, sha256_file(src.ckpt_path))
    (log or (lambda m: None))(f"validated {src.ckpt_path} on {info.root} -> {out}")
    return out


@dataclass
class Source:
    """What is validated: a run folder (config, checkpoint, row) or a bare checkpoint file."""

    cfg: object             # RunConfig of the run (for a bare file: its model, defaults otherwise)
    ckpt_path: Path
    name: str               # the timm name whose data config (mean, std, interpolation) applies
    run_dir: Path | None = None
    row: dict | None = None


def _read_source(source: Path, model: str | None) -> Source:
    from fgvc.config import RunConfig, load_config
    from fgvc.runs.write import read_row

    if not source.exists():
        raise FGVCError(f"checkpoint or run folder not found: {source}")
    if not source.is_dir():
        if not model:
            raise FGVCError(f"{source} is a checkpoint file: name its architecture with --model NAME "
                            "(a timm model name, e.g. resnet50.tv_in1k)")
        return Source(RunConfig(benchmark="validate", model=model, pretrained=False), source, model)
    for f in (CONFIG, CHECKPOINT):
        if not (source / f).is_file():
            raise FGVCError(f"{source} has no {f}: not a finished run folder (a run writes {CONFIG} and "
                            f"{CHECKPOINT}); pass a run folder or a checkpoint file with --model NAME")
    try:
        cfg = load_config(source / CONFIG)
    except yaml.YAMLError as e:
        raise FGVCError(f"{source / CONFIG}: not valid YAML ({e})") from None
    if model is not None and model != cfg.model:
        raise FGVCError(f"--model {model} differs from {cfg.model} in {source / CONFIG}: --model is only "
                        "for bare checkpoint files")
    return Source(cfg, source / CHECKPOINT, _full_name(cfg.model, cfg.pretrained), source, read_row(source))


def _load_model(src: Source, info, data: Path) -> tuple[nn.Module, dict]:
    """The model with the checkpoint's weights, checked against the dataset's classes."""
    from fgvc.engine.checkpoint import load_final
    from fgvc.models import build_model, read_state_dict

    if src.run_dir is not None:
        _check_classes(src.run_dir, info.classes, data)
        sd, ck_meta = load_final(src.ckpt_path)
        trained = ck_meta.get("run_id")
        if trained and trained != src.cfg.run_id:  # the settings image size, crop and seed are read from
            raise FGVCError(f"{src.run_dir / CONFIG} hashes to run id {src.cfg.run_id}, but {src.ckpt_path} was "
                            f"trained as {trained}: the settings were changed after the run; restore them")
    else:
        sd, ck_meta = read_state_dict(src.ckpt_path, "checkpoint"), {}
    net = build_model(src.name, info.num_classes, pretrained=False, seed=src.cfg.seed)
    check_state_dict(sd, net, src.name, src.ckpt_path, data)
    own = net.state_dict()
    net.load_state_dict({**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **sd})
    return net, ck_meta


def eval_precision(run_dir: Path | None, device: torch.device) -> str:
    """The precision a run folder's final pass used (its provenance.json; older runs: fp32), so
    that validating the run reproduces its files; fp32 where this device has no native bf16.
    A bare checkpoint: this device's `auto`."""
    from fgvc.engine.device import resolve_precision

    if run_dir is None:
        return resolve_precision("auto", device)
    from fgvc.runs.read import read_provenance, recorded_precision

    # auto is bf16 exactly where this device runs bf16 natively
    return resolve_precision("auto", device) if recorded_precision(read_provenance(run_dir)) == "bf16" else "fp32"


def _predict_splits(net, cfg, info, device: torch.device, view: dict, progress: bool) -> dict:
    """The run's own final step: `predict` on the test split and the un-augmented train split."""
    from fgvc.data.loaders import build_eval_loader, eval_batch_size
    from fgvc.engine.device import place_model
    from fgvc.engine.loop import predict

    net = place_model(net, device)
    precision = view["precision"]
    outs = {}
    for split, is_train in (("test", False), ("train", True)):
        frame = info.split(is_train)
        loader = build_eval_loader(info, frame, view["image_size"], view["crop_pct"], view["dcfg"],
                                   eval_batch_size(cfg.batch_size, device), device, view["workers"])
        outs[split] = dict(predict(net, loader, device, precision=precision, desc=f"{split} features",
                                   progress=progress), frame=frame)
    return outs


def _write_results(outs: dict, src: Source, info, out: Path, device: torch.device, view: dict, ck_meta: dict,
                   sha: str) -> None:
    from fgvc.config import save_config
    from fgvc.engine.metrics import accuracy_metrics
    from fgvc.engine.provenance import now, provenance
    from fgvc.io import atomic_write_json, atomic_write_text
    from fgvc.runs.write import write_outputs

    test, train = outs["test"], outs["train"]
    final = accuracy_metrics(test["probs"], test["labels"])
    winfo = dict(weights=src.ckpt_path.name, weights_source=str(src.ckpt_path.resolve()), weights_sha256=sha)
    prov = provenance(src.name, info, device, winfo, deterministic=False)
    source_prov = {}
    if src.run_dir is not None and (src.run_dir / "provenance.json").is_file():
        from fgvc.runs.read import read_provenance

        source_prov = read_provenance(src.run_dir)
    prov.update(command="validate", checkpoint=str(src.ckpt_path.resolve()), checkpoint_sha256=sha,
                source_run=str(src.run_dir.resolve()) if src.run_dir is not None else None,
                source_run_id=ck_meta.get("run_id"), source_epoch=ck_meta.get("epoch"),
                source_dataset_content_sha256=source_prov.get("dataset_content_sha256"),
                source_git_commit=source_prov.get("git_commit"), image_size=view["image_size"],
                crop_pct=view["crop_pct"], workers=view["workers"], precision=view["precision"], finished=now())

    test_ids = test["frame"].image_id.to_numpy()
    write_outputs(out, test_ids, test, train["frame"].image_id.to_numpy(), train)
    metrics = dict(top1=final["top1"], top5=final["top5"], mean_class_acc=final["mean_class_acc"],
                   num_test=len(test_ids), num_train=len(train["frame"]), data=str(info.root),
                   dataset_content_sha256=info.content_sha256, checkpoint=str(src.ckpt_path))
    atomic_write_json(out / "metrics.json", metrics)
    if src.run_dir is not None:
        save_config(src.cfg, out / CONFIG)
    else:
        known = dict(benchmark=src.cfg.benchmark, model=src.name, image_size=view["image_size"],
                     crop_pct=view["crop_pct"])
        atomic_write_text(out / CONFIG, "# fgvc validate of a bare checkpoint: its training settings are unknown\n"
                          + yaml.safe_dump(known, sort_keys=False))
    atomic_write_json(out / "classes.json", info.classes)
    atomic_write_json(out / "row.json", _row(src, out, final, prov, ck_meta, sha, info))
    atomic_write_json(out / "provenance.json", prov)
    if out.parent.name == "runs":  # so `fgvc report <benchmark>` sees it at once
        from fgvc.runs.table import write_runs_csv

        write_runs_csv(out.parent.parent)


def _row(src: Source, out: Path, final: dict, prov: dict, ck_meta: dict, sha: str, info) -> dict:
    """row.json: the source run's row (training facts) with this evaluation's metrics."""
    from fgvc.runs.write import blank_row

    row = blank_row()
    if src.row:
        row.update(src.row)
    else:
        row.update(benchmark=src.cfg.benchmark, model=src.name, weights=src.ckpt_path.name, weights_sha256=sha,
                   method="external", image_size=prov["image_size"])
    # Inside a benchmark's runs/ folder the row's run_id must be the folder name (the report
    # finds run folders by run_id); elsewhere it names what was evaluated.
    run_id = out.name if out.parent.name == "runs" else (ck_meta.get("run_id") or src.ckpt_path.stem)
    row.update(run_id=run_id, top1=final["top1"], top5=final["top5"], mean_class_acc=final["mean_class_acc"],
               best_epoch_top1=None, device=prov["device"], git_commit=prov["git_commit"], status="ok", error="",
               evaluated_data=str(info.root), evaluated_checkpoint=str(src.ckpt_path))
    return row


__all__ = ["validate", "check_state_dict", "classifier_key", "validate_out"]
