"""The training engine, below the run orchestration of fgvc.train:

- `device`: which device, its backend flags, the model placed on it;
- `loop`: `train_one_epoch`, `predict` (probabilities and features), the auxiliary loss the loop carries;
- `metrics`: accuracy from probabilities (kept out of the loop);
- `checkpoint`: the one checkpoint format (each epoch, resume, the final model);
- `distributed`: DDP under torchrun (one process per GPU), rank 0 writes;
- `schedule`: the lr of an epoch (constant, or cosine with warm-up), stateless;
- `trackers`: TensorBoard / MLflow logging;
- `provenance`: where a result came from (code, environment, weights, data).

`fgvc.train`, `fgvc.validate` and `fgvc.speed.measure` all use these, so their outputs stay identical.
"""
