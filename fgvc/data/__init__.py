"""The data path, in the order data flows through it:

- `dataset`: the dataset folder (manifest.csv, dataset.json) and the validation split (torch-free);
- `decode`: every image decoded once per process; `cache`: a split as one flat uint8 buffer,
  memory-mapped from a file keyed by the dataset's content hash;
- `sampling`: seeds and batch order (per seed, epoch and image; dealt across processes);
- `transforms` + `per_sample`: the DataLoader pipeline (torchvision v2, the CPU default);
  `batched`: augmentation of whole batches on the device that holds the cache (the CUDA default);
- `loaders`: `build_loaders`, the run's loaders whichever pipeline makes them.

The package itself imports nothing, so `fgvc.data.dataset` stays torch-free.
"""
