"""The training engine, below the run orchestration of fgvc.train:

- `device`: which device, its backend flags, the model placed on it;
- `loop`: `train_one_epoch`, `predict` (probabilities and features), the auxiliary loss the loop carries;
- `metrics`: accuracy from probabilities (kept out of the loop);
- `checkpoint`: the one checkpoint format (each epoch, resume, the final model);
- `artifacts`: a run folder's files (metrics, predictions, features, row, log);
- `provenance`: where a result came from (code, environment, weights, data).

`fgvc.train`, `fgvc.validate` and `fgvc.speed` all use these, so their outputs stay identical.
"""
