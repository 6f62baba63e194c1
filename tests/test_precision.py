"""Run precision: resolving `--precision`, and bf16 on CPU training depthwise convolutions in fp32."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from fgvc.engine import device as device_mod
from fgvc.engine.device import keep_depthwise_fp32, place_model, resolve_precision
from fgvc.errors import FGVCError

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_is_bf16_only_with_bf16_instructions(monkeypatch, native, expected):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: native)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32"


def test_auto_is_bf16_on_cuda_and_bad_names_are_refused():
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(FGVCError, match="use auto, fp32 or bf16"):
        resolve_precision("fp16", CPU)


def test_bf16_refused_on_a_cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    with pytest.raises(FGVCError, match="no bf16 instructions"):
        resolve_precision("bf16", CPU)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 4, 1))


def _x() -> torch.Tensor:
    return torch.randn(2, 3, 9, 9)


def test_only_depthwise_convolutions_are_kept_fp32_and_the_state_dict_is_unchanged():
    net = _net()
    keys = list(net.state_dict())
    assert keep_depthwise_fp32(net) == 1
    assert "forward" in vars(net[1]) and "forward" not in vars(net[0]) and "forward" not in vars(net[2])
    assert list(net.state_dict()) == keys


def test_training_under_bf16_autocast_runs_the_depthwise_conv_in_fp32():
    plain, kept = _net(), _net()
    keep_depthwise_fp32(kept)
    x = _x()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = kept[0](x)
        out = kept[1](h)
        ref_bf16 = plain[1](h)  # what plain autocast gives
    ref_fp32 = plain[1](h.float())  # what an fp32 depthwise conv gives
    assert h.dtype == out.dtype == torch.bfloat16
    assert torch.equal(out, ref_fp32.to(torch.bfloat16))
    assert not torch.equal(out, ref_bf16)
    out.float().sum().backward()
    assert kept[1].weight.grad is not None and kept[1].weight.grad.dtype == torch.float32


def test_inference_and_fp32_are_untouched():
    plain, kept = _net(), _net()
    keep_depthwise_fp32(kept)
    x = _x()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(kept(x), plain(x))
    assert torch.equal(kept(x), plain(x))


def test_a_deep_copy_uses_its_own_weights():
    net = _net()
    keep_depthwise_fp32(net)
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin[1].weight.zero_()
        twin[1].bias.zero_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = net[0](_x())
        assert torch.count_nonzero(twin[1](h)) == 0
        assert torch.count_nonzero(net[1](h)) > 0


def test_place_model_keeps_lite0_depthwise_fp32_only_for_bf16_on_cpu():
    timm = pytest.importorskip("timm")
    m = place_model(timm.create_model("tf_efficientnet_lite0", num_classes=3, pretrained=False), CPU, precision="bf16")
    patched = [n for n, mod in m.named_modules() if "forward" in vars(mod)]
    assert len(patched) == 16 and all("conv_dw" in n for n in patched)
    fp32 = place_model(timm.create_model("tf_efficientnet_lite0", num_classes=3, pretrained=False), CPU)
    assert not any("forward" in vars(mod) for mod in fp32.modules())


@pytest.mark.slow
@pytest.mark.skipif(not device_mod.cpu_has_bf16(), reason="this CPU has no native bf16")
def test_a_bf16_run_on_cpu_records_its_precision_and_trains(sparrow_dataset, tmp_path):
    import json

    from tiny import tiny_config

    from fgvc.config import RunConfig
    from fgvc.config import RunOptions
    from fgvc.train import run

    cfg = RunConfig(**tiny_config(model="test_efficientnet", method="center", epochs=2, lr=0.05))
    run(cfg, RunOptions(data=sparrow_dataset, out=tmp_path, progress=False, precision="bf16"))
    run_dir = tmp_path / "runs" / cfg.run_id
    assert json.loads((run_dir / "provenance.json").read_text())["precision"] == "bf16"
    row = json.loads((run_dir / "row.json").read_text())
    assert row["status"] == "ok" and 0 <= row["top1"] <= 100


def test_keep_freed_memory_sets_glibc_and_can_be_turned_off(monkeypatch):
    import platform

    monkeypatch.setenv("FGVC_KEEP_MALLOC", "1")
    assert device_mod.keep_freed_memory() is False
    monkeypatch.delenv("FGVC_KEEP_MALLOC")
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert device_mod.keep_freed_memory() is True
        # other settings (tools/memory_options.py), here the same ones: each one glibc accepts
        assert device_mod.keep_freed_memory(dict(device_mod.MALLOC_SETTINGS)) is True
        assert device_mod.keep_freed_memory({}) is True  # nothing to set: glibc's own defaults
    big = torch.ones(64, 1024, 1024)  # 256 MB: served from the heap now, and still correct
    assert float(big.sum()) == 64 * 1024 * 1024


@pytest.mark.parametrize("recorded, native, expected", [
    ("bf16", True, "bf16"),   # validating a bf16 run reproduces its bf16 final pass
    ("bf16", False, "fp32"),  # no native bf16 here: the exact reference instead
    ("fp32", True, "fp32"),
    (None, True, "fp32"),     # runs before `precision` was recorded trained in fp32
])
def test_validate_evaluates_a_run_in_its_own_precision(tmp_path, monkeypatch, recorded, native, expected):
    from fgvc.validate import eval_precision

    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: native)
    prov = {"git_commit": "x"} if recorded is None else {"precision": recorded}
    (tmp_path / "provenance.json").write_text(json.dumps(prov))
    assert eval_precision(tmp_path, CPU) == expected
    assert eval_precision(None, CPU) == ("bf16" if native else "fp32")  # a bare checkpoint: auto
