"""The dataset folder's `manifest.csv`, as `data_prep.carve` writes it and `fgvc.data`
(and `data_prep.verify`) read it: one row per image, these columns in this order.

- image_id: CUB's image id (images.txt); the split and the runs' predictions refer to it
- path: the image file, relative to the dataset folder (`images/<class folder>/<file>`)
- label: 0..K-1, the class's rank among the carved classes by CUB class id
- cub_class_id: CUB's class id (1..200)
- class_name: the class folder's name without its numeric prefix (`Baird_Sparrow`)
- is_train: 1 for CUB's official training split, 0 for its test split

Free of imports, so that `fgvc.data` can use it without loading the carving code.
"""

MANIFEST_COLUMNS = ("image_id", "path", "label", "cub_class_id", "class_name", "is_train")

__all__ = ["MANIFEST_COLUMNS"]
