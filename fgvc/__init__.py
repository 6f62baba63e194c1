"""fgvc: a benchmark suite for fine-grained visual classification (FGVC).

Kept free of heavy imports so that `fgvc --help` and `data_prep` start fast.
"""

__version__ = "0.1.0"
