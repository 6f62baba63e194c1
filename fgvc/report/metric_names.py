"""The metrics `fgvc compare` can pair on, and how its tables name each metric.

Import-free, so `fgvc/cli/report.py` can list the `--metric` choices without loading pandas
(`fgvc --help` stays fast) while `fgvc/report/compare.py` reads the same definitions.
"""

# how tables name each metric (a Δ column, the paired statistics' metric)
DELTA_NAMES = {"top1": "top-1", "top5": "top-5", "mean_class_acc": "mean-class", "val_top1": "validation top-1"}
# what the paired statistics can read (--metric); val_top1 is in runs.csv only
PAIRED_METRICS = ("top1", "val_top1")

__all__ = ["DELTA_NAMES", "PAIRED_METRICS"]
