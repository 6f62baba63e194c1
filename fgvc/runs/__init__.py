"""The run-folder contract (../shared/DESIGN.md, "Contracts"), torch-free: what a run folder
holds and who reads it.

- `write`: the files a run writes (metrics.csv, predictions.csv, features.npz, row.json, train.log);
- `read`: reading them back (config, provenance, classes, predictions, metrics, features);
- `health`: is a finished run folder whole?
- `table`: `OUT/runs.csv`, one row per run, rebuilt from the run folders' row.json;
- `inputs`: the dataset and weights a run folder was made with (checked before it is reused).

Training (fgvc.train), evaluation (fgvc.validate), grids (fgvc.grid) and the report all go
through these modules, so a run folder has one definition.
"""
