"""`fgvc speed`: fgvc's training pipeline against two reference loops, on the same data,
model, batch size and device.

The references (fgvc.speed.reference_loops) are the pytorch/examples `imagenet/main.py` loop
(`examples`: PIL decode of every JPEG on every access, fp32 NCHW, test evaluated every epoch)
and the loop a competent user writes (`cached`: decode once into memory, torchvision v2 in
DataLoader workers, channels_last, fp32, test evaluated once at the end). fgvc's side is its
own code: `fgvc.data.loaders.build_loaders` (decode once; batched augmentation on the device
or per-sample from memory), `train_one_epoch` (in the run's precision, channels_last) and
`predict`.

All are timed the same way: `--warmup-batches` training steps first (not timed: start-up,
cudnn autotuning, caches), then `--repeats` times a fresh epoch iterator over
`--train-batches` batches (an epoch's start-up, e.g. worker processes, is included, as in a
real epoch) and one pass of evaluation; the median over repeats is reported. Each loop is
measured in a fresh process (`--same-process` to skip that). When fewer
batches than an epoch are timed, the seconds per epoch are extrapolated from the measured
rates, and the CSV says so. One default run's wall time (`-run.csv`) is built from these
rates as each loop runs by default: its setup (decoding), every epoch's training, the
evaluations it does, and for fgvc the final feature pass and the files it writes. The grid's
wall time (every run of a benchmark YAML, one after another) is extrapolated the same way
unless `--measure-grid` runs fgvc's grid for real. With `--compile` fgvc is measured twice,
eager (`fgvc`) and compiled (`fgvc-compiled`), side by side: the compiled warm-up (which then
also trains one batch of the size an epoch ends with, a second compiled graph) is measured
with an empty compile cache, and again from the filled cache after `torch.compiler.reset()`:
a run alone, or the first of a grid, is charged the first; every later run of the grid, which
loads the compiled code from the on-disk cache, the second (`--measure-grid` then runs the
grid compiled).

Modules: `measure` (the timings, CSVs and provenance), `reference_loops` (the two
references). The package itself imports nothing: `fgvc speed --help` shows this text.
"""
