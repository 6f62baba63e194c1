"""Auxiliary losses on the pooled features, one module each, and their registry.

- `registry`: every loss by name with the config keys it reads, their checks and its
  factory, and the rules of the keys' values (torch-free: `RunConfig.validate()` uses it);
  `build_aux_loss`, `register_loss`;
- `center`: center loss (Wen et al., ECCV 2016) with its variants and update rules;
- `contrastive_center`: the contrastive-center loss (Qi and Su, 2017);
- `feature_norm`: lambda * mean ||x||^2, center loss with its centres at zero (a control);
- `metric`: ArcFace, CosFace, supervised contrastive and the mined triplet loss, from
  pytorch-metric-learning;
- `confusion`: Pairwise Confusion and maximum entropy (Dubey et al.), on the logits.

The formulas, their config keys and their relation to the papers: docs/losses.md.

Auxiliary-loss protocol (what the training loop calls; every registered loss follows it)::

    aux = build_aux_loss(cfg, K, feature_dim(model)).to(device)   # None for method "ce"
    opt = SGD(list(model.parameters()) + aux.model_parameters(), ...)
    aux_opt = aux.make_optimizer()           # its own optimizer, or None
    loss = ce + aux.weight * aux(feats, labels)   # forward: UNWEIGHTED float32 scalar
                                             # (the logits instead where aux.inputs == "logits")
    loss.backward()
    aux.before_step()                        # e.g. rescale / all-reduce its gradients
    opt.step(); aux_opt and aux_opt.step()
    aux.after_step(feats.detach(), labels)   # e.g. a non-gradient update of its state

`weight` is lambda (cfg.center_weight). A new loss is a module with these five methods
and `weight`: a file here with a `build_<name>(num_classes, feat_dim, cfg)` factory and one entry
in `registry.BUILTIN` (its keys and check), or, from outside the package,
`@register_loss("name")` on a factory (docs/losses.md has a ten-line example); `method:
name` in a YAML then selects it. Its state_dict goes into the run's checkpoint.

The package imports its modules lazily (`from fgvc.losses import CenterLoss` works), so that
`fgvc.config`, which reads the registry, stays free of torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "CenterLoss": "center", "Centers": "center", "ContrastiveCenterLoss": "contrastive_center",
    "FeatureNormLoss": "feature_norm", "register_loss": "registry", "unregister_loss": "registry",
    "registered_losses": "registry", "build_aux_loss": "registry", "check_aux_config": "registry",
    "PROTOCOL": "registry",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'fgvc.losses' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fgvc.losses.{_WHERE[name]}"), name)


__all__ = list(_WHERE)
