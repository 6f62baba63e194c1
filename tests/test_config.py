import re

import pytest

from fgvc.config import RunConfig, expand_grid, load_config, load_grid, parse_overrides, save_config
from fgvc.errors import FGVCError


def test_grid_is_product_and_ce_deduplicated():
    grid = load_grid(None, {"methods": ["ce", "center"], "seeds": [0, 1], "center_weight": [0.001, 0.01]})
    runs = expand_grid(grid)
    # CE ignores lambda: 2 seeds x (1 CE + 2 center)
    assert len(runs) == 6
    assert sum(r.method == "ce" for r in runs) == 2
    assert len({r.run_id for r in runs}) == 6
    assert runs[0].seed == 0 and runs[-1].seed == 1


def test_run_id_readable_and_stable():
    cfg = RunConfig(model="resnet50.tv_in1k", method="center", center_weight=0.001, seed=3)
    assert cfg.run_id.startswith("resnet50.tv_in1k-center-lam0.001-s3-")
    assert cfg.run_id == RunConfig(model="resnet50.tv_in1k", method="center", center_weight=0.001, seed=3).run_id
    assert cfg.run_id != RunConfig(model="resnet50.tv_in1k", method="center", center_weight=0.001, seed=3, lr=0.01).run_id
    # the benchmark's name is not part of the identity: a subset of a grid reuses run folders
    assert cfg.run_id == RunConfig(benchmark="other", model="resnet50.tv_in1k", method="center",
                                   center_weight=0.001, seed=3).run_id


def test_yaml_and_overrides(tmp_path):
    y = tmp_path / "b.yaml"
    y.write_text("name: b\nmodel: test_resnet\nmethods: [ce, center]\nseeds: [0, 1, 2]\nepochs: 2\n")
    grid = load_grid(y, parse_overrides(["seeds=[0]", "lr=0.01"]))
    runs = expand_grid(grid)
    assert [r.method for r in runs] == ["ce", "center"]
    assert all(r.lr == 0.01 and r.epochs == 2 and r.benchmark == "b" for r in runs)


@pytest.mark.parametrize("text, message", [
    ("modle: x\n", "unknown key 'modle'"),
    ("epochs: three\n", "invalid value epochs='three'"),
    ("lr: -1\n", "invalid value lr=-1"),
    ("methods: [center]\ncenter_weight: 0\n", "invalid value center_weight=0.0"),
    ("methods: [xent]\n", "invalid value method='xent'"),
    ("batch_size: 0\n", "invalid value batch_size=0"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_bad_yaml(tmp_path, text, message):
    y = tmp_path / "bad.yaml"
    y.write_text(text)
    with pytest.raises(FGVCError, match=message.replace("[", r"\[").replace("(", r"\(")) as e:
        expand_grid(load_grid(y))
    assert "\n" not in str(e.value)


CASES_YAML = """name: confirm
model: test_resnet
seeds: [5, 6]
epochs: 2
cases:
  - {methods: ce, lr: 0.01}
  - {methods: center, lr: 0.001, center_weight: [0.01, 0.1]}
"""


def test_cases_are_a_union_of_sub_grids(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text(CASES_YAML)
    runs = expand_grid(load_grid(y))
    assert len(runs) == 6 and all(r.epochs == 2 and r.benchmark == "confirm" for r in runs)
    assert {(r.method, r.lr, r.center_weight) for r in runs if r.seed == 5} == {
        ("ce", 0.01, 0.001), ("center", 0.001, 0.01), ("center", 0.001, 0.1)}
    assert [r.seed for r in runs] == [5, 5, 5, 6, 6, 6]
    # --set wins over the base and every case
    over = expand_grid(load_grid(y, parse_overrides(["lr=0.1", "seeds=[0]"])))
    assert {r.lr for r in over} == {0.1} and {r.seed for r in over} == {0} and len(over) == 3


@pytest.mark.parametrize("cases, message", [
    ("cases: []\n", "`cases` must be a non-empty list"),
    ("cases: {lr: 0.1}\n", "`cases` must be a non-empty list"),
    ("cases:\n  - {lr: 0.1}\n  - 3\n", "cases[1]: expected a non-empty mapping"),
    ("cases:\n  - {lrr: 0.1}\n", "c.yaml cases[0] (did you mean 'lr'?)"),
    ("cases:\n  - {lr: -1}\n", "invalid value lr=-1"),
    ("cases:\n  - {cases: [{lr: 0.1}]}\n", "cannot be nested"),
])
def test_bad_cases(tmp_path, cases, message):
    y = tmp_path / "c.yaml"
    y.write_text("model: test_resnet\n" + cases)
    with pytest.raises(FGVCError, match=re.escape(message)) as e:
        expand_grid(load_grid(y))
    assert "\n" not in str(e.value)


def test_bad_override():
    with pytest.raises(FGVCError, match="expected key=value"):
        parse_overrides(["epochs"])
    with pytest.raises(FGVCError, match="did you mean 'epochs'"):
        load_grid(None, {"epoch": 3})


def test_config_roundtrip(tmp_path):
    cfg = RunConfig(model="test_resnet", method="center", seed=2, center_update="ema")
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_an_int_for_a_float_key_keeps_the_run_id_through_config_yaml(tmp_path):
    cfg = RunConfig(model="test_resnet", method="center", center_weight=1, lr=1, label_smoothing=0)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").run_id == cfg.run_id
    assert cfg.run_id == RunConfig(model="test_resnet", method="center", center_weight=1.0, lr=1.0).run_id


def test_saved_ce_config_reloads_valid(tmp_path):
    cfg = RunConfig(model="test_resnet", method="ce", seed=1)
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml").validate()
    assert again.run_id == cfg.run_id


def test_atomic_writes_follow_umask(tmp_path):
    import os

    from fgvc.io import atomic_dir, atomic_path, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.csv") as tmp:
            tmp.write_text("y")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("z")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.csv", "d"]


def test_run_ids_of_committed_results_are_stable():
    """Committed run folders are found again by id: new config keys at their default
    must not change the hash of older configs."""
    base = dict(benchmark="sparrows-lite0", model="tf_efficientnet_lite0")
    assert RunConfig(**base, method="ce", seed=0).run_id == "tf_efficientnet_lite0-ce-lam0-s0-d025cd61"
    assert RunConfig(**base, method="center", seed=0).run_id == "tf_efficientnet_lite0-center-lam0.001-s0-1fc48789"
    assert RunConfig(**base, method="center", seed=0, center_normalize=True).run_id.endswith("-1f871b06")
    # CE ignores every center-loss setting, new ones included
    assert RunConfig(**base, method="ce", center_normalize=True).run_id == RunConfig(**base, method="ce").run_id


def test_new_keys_type_checked():
    with pytest.raises(FGVCError, match="center_normalize='yes'"):
        load_grid(None, {"center_normalize": "yes"})
    with pytest.raises(FGVCError, match="center_distance='manhattan'"):
        expand_grid(load_grid(None, {"center_distance": "manhattan"}))
