"""Models: timm's tiny test models (random init, no download), weights files written here,
and the real Lite0 weights from ../shared when present."""

from __future__ import annotations

import hashlib
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from fgvc import models
from fgvc.errors import FGVCError
from fgvc.models import build_model, data_config, feature_dim, forward_with_features, weights_info

TINY = ["test_resnet", "test_efficientnet"]


def backbone(sd: dict, classifier: str) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith(classifier + ".")}


@pytest.fixture(scope="module")
def source_sd() -> dict:
    """A test_resnet state dict (1000-class head) that is not what seed 0 would give."""
    torch.manual_seed(123)
    m = timm.create_model("test_resnet", pretrained=False)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5)  # make every tensor differ from a fresh init
    return {k: v.clone().contiguous() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("name", TINY)
def test_forward_with_features_is_one_pass_of_the_model(name):
    model = build_model(name, 5, pretrained=False).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        logits, feats = forward_with_features(model, x)
        pooled = model.forward_features(x).mean(dim=(2, 3))  # independent: global average pool
        ref = model(x)
    assert feats.shape == (3, feature_dim(model)) == (3, model.get_classifier().in_features)
    torch.testing.assert_close(feats, pooled)
    torch.testing.assert_close(logits, ref)
    assert logits.shape == (3, 5)


def test_features_carry_gradient_from_the_same_pass():
    model = build_model("test_resnet", 4, pretrained=False).train()
    logits, feats = forward_with_features(model, torch.randn(2, 3, 32, 32))
    (logits.sum() + feats.pow(2).sum()).backward()
    assert model.conv1[0].weight.grad is not None


@pytest.mark.parametrize("name,dim", [("resnet50", 2048), ("tf_efficientnet_lite0", 1280)])
def test_feature_dim_of_real_architectures(name, dim):
    with torch.device("meta"):  # shapes only, instant
        model = timm.create_model(name, num_classes=21)
    assert feature_dim(model) == dim == model.get_classifier().in_features


def test_head_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = build_model("test_resnet", 7, pretrained=False, seed=0)
    b = build_model("test_resnet", 7, pretrained=False, seed=0)
    c = build_model("test_resnet", 7, pretrained=False, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_data_config_from_pretrained_cfg():
    cfg = data_config(build_model("test_resnet", 3, pretrained=False))
    # timm's registered cfg for test_resnet.r160_in1k
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    assert cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 0.95
    assert cfg["input_size"] == (3, 160, 160)


# ---- weights files ----------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["safetensors", "pt", "pt-state_dict", "pt-model"])
def test_load_weights_file(tmp_path, source_sd, fmt):
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "safetensors":
        save_file(source_sd, str(path))
    elif fmt == "pt":
        torch.save(source_sd, path)
    else:
        torch.save({fmt.split("-")[1]: source_sd, "epoch": 3}, path)
    model = build_model("test_resnet", 4, pretrained_file=path, seed=0)
    got = model.state_dict()
    for k, v in backbone(source_sd, "fc").items():
        assert torch.equal(got[k], v), k
    assert model.fc.out_features == 4 and model.fc.weight.shape == (4, feature_dim(model))
    # the head is the seeded fresh one, the same as for a random-init build
    fresh = build_model("test_resnet", 4, pretrained=False, seed=0)
    assert torch.equal(model.fc.weight, fresh.fc.weight)


def test_file_from_other_architecture(tmp_path):
    path = tmp_path / "effnet.safetensors"
    sd = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(FGVCError, match=r"effnet\.safetensors does not match test_resnet: "
                                        r"\d+ missing keys \(conv1\.0\.weight, .*\d+ unexpected keys \(") as e:
        build_model("test_resnet", 4, pretrained_file=path)
    assert "\n" not in str(e.value)


def test_file_with_shape_mismatch_and_missing_key(tmp_path, source_sd):
    sd = dict(source_sd)
    sd["conv1.0.weight"] = torch.zeros(8, 3, 3, 3)  # different width
    del sd["layer1.0.conv1.weight"]
    path = tmp_path / "narrow.pt"
    torch.save(sd, path)
    shape = tuple(source_sd["conv1.0.weight"].shape)
    with pytest.raises(FGVCError) as e:
        build_model("test_resnet", 4, pretrained_file=path)
    msg = str(e.value)
    assert "narrow.pt does not match test_resnet" in msg
    assert "1 missing keys (layer1.0.conv1.weight)" in msg
    assert f"1 shape mismatches (conv1.0.weight: file (8, 3, 3, 3) vs model {shape})" in msg


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FGVCError, match=r"weights file not found: .*nope\.safetensors"):
        build_model("test_resnet", 4, pretrained_file=tmp_path / "nope.safetensors")
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(FGVCError, match=r"cannot read weights file .*garbage\.pt"):
        build_model("test_resnet", 4, pretrained_file=bad)
    no_tensors = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "note": "hello"}, no_tensors)
    with pytest.raises(FGVCError, match=r"meta\.pt does not hold a state dict"):
        build_model("test_resnet", 4, pretrained_file=no_tensors)


# ---- names --------------------------------------------------------------------------
def test_unknown_model_suggests_close_names():
    with pytest.raises(FGVCError, match=r"unknown model 'resnet5O': did you mean resnet50\b"):
        build_model("resnet5O", 21, pretrained=False)
    with pytest.raises(FGVCError, match=r"unknown model 'resnt50\.tv_in1k': did you mean resnet50\.tv_in1k"):
        build_model("resnt50.tv_in1k", 21, pretrained=False)


def test_pretrained_tags():
    with pytest.raises(FGVCError, match=r"unknown pretrained tag 'tv_in1kk' for model 'resnet50': did you mean tv_in1k"):
        weights_info("resnet50", "tv_in1kk", None)
    with pytest.raises(FGVCError, match=r"names pretrained tag 'tv_in1k' but pretrained='a1_in1k'"):
        weights_info("resnet50.tv_in1k", "a1_in1k", None)
    assert weights_info("resnet50", "tv_in1k", None)["weights"] == "resnet50.tv_in1k"
    assert weights_info("resnet50.tv_in1k", True, None) == {
        "weights": "resnet50.tv_in1k", "weights_source": "timm-hub:resnet50.tv_in1k", "weights_sha256": None}
    default = timm.models.get_pretrained_cfg("resnet50").tag  # timm's default tag
    assert weights_info("resnet50", True, None)["weights"] == f"resnet50.{default}"


def test_weights_info_random_and_file(tmp_path, source_sd):
    for p in (False, None):
        assert weights_info("test_resnet", p, None) == {
            "weights": "random-init", "weights_source": "random-init", "weights_sha256": None}
    path = tmp_path / "w.safetensors"
    save_file(source_sd, str(path))
    info = weights_info("test_resnet", True, path)
    assert info == {"weights": "w.safetensors", "weights_source": str(path.resolve()),
                    "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


# ---- hub ----------------------------------------------------------------------------
def test_hub_unreachable_fails_fast(monkeypatch):
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    monkeypatch.setattr(models, "_cached_hub_file", lambda full: None)
    t = time.monotonic()
    with pytest.raises(FGVCError, match=r"test_resnet\.r160_in1k.*unreachable.*--pretrained-file PATH.*WEIGHTS="):
        build_model("test_resnet", 4, pretrained=True)
    assert time.monotonic() - t < 10


def test_hub_unreachable_uses_cached_file(monkeypatch, tmp_path, source_sd):
    path = tmp_path / "model.safetensors"
    save_file(source_sd, str(path))
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    monkeypatch.setattr(models, "_cached_hub_file", lambda full: str(path))
    model = build_model("test_resnet", 4, pretrained=True)
    assert torch.equal(model.conv1[0].weight, source_sd["conv1.0.weight"])


def test_hub_download_error_becomes_fgvc_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(models, "_hub_reachable", lambda: True)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", offline)
    with pytest.raises(FGVCError, match=r"cannot load pretrained weights for test_resnet\.r160_in1k from "
                                        r"the Hugging Face hub: .*couldn't connect.*--pretrained-file"):
        build_model("test_resnet", 4, pretrained=True)


# ---- the real Lite0 weights -----------------------------------------------------------
def test_real_lite0_weights(real_weights):
    from safetensors.torch import load_file

    model = build_model("tf_efficientnet_lite0", 21, pretrained_file=real_weights)
    file_sd = load_file(str(real_weights))
    got = model.state_dict()
    for k, v in backbone(file_sd, "classifier").items():
        assert torch.equal(got[k], v), k
    assert model.get_classifier().out_features == 21 and feature_dim(model) == 1280
    cfg = data_config(model)
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["interpolation"] == "bicubic"
    sums = dict(reversed(line.split()) for line in (real_weights.parent / "SHA256SUMS").read_text().splitlines()
                if line.strip())
    info = weights_info("tf_efficientnet_lite0", True, real_weights)
    assert info["weights"] == real_weights.name
    assert info["weights_sha256"] == sums[real_weights.name]
