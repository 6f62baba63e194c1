"""The dataset folder's `manifest.csv`, as data_prep's readers write it and `fgvc.data`
(and `data_prep.verify`) read it: one row per image, these columns in this order.

- image_id: the image's id in its source (CUB: images.txt; the other datasets' rules are in
  docs/datasets.md); the split and the runs' predictions refer to it
- path: the image file, relative to the dataset folder (`images/<class folder>/<file>`)
- label: 0..K-1, the class's rank among the carved classes by class id
- cub_class_id: the source's class id (CUB: 1..200). The name is historical: for the other
  datasets it holds the same value as source_class_id, so scripts that read it keep working
- class_name: the class's name as one word (CUB: the folder name without its numeric prefix,
  `Baird_Sparrow`; others: the official name with spaces and other separators as `_`)
- is_train: 1 for the source's official training split, 0 for its test split
- source_class_id (an extension, after the original columns): the source's class id, the
  dataset-neutral twin of cub_class_id, written for every dataset but CUB (whose manifest
  keeps its six columns, so a fresh carve has the content checksum committed runs record).
  Folders carved before it existed lack it, so readers require only MANIFEST_COLUMNS.

Free of imports, so that `fgvc.data` can use it without loading the carving code.
"""

MANIFEST_COLUMNS = ("image_id", "path", "label", "cub_class_id", "class_name", "is_train")
EXTRA_COLUMNS = ("source_class_id",)
WRITTEN_COLUMNS = MANIFEST_COLUMNS + EXTRA_COLUMNS

__all__ = ["MANIFEST_COLUMNS", "EXTRA_COLUMNS", "WRITTEN_COLUMNS"]
