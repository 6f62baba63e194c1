"""data_prep: from a dataset's official files to a verified dataset folder.

`download` fetches and checks an official archive, `carve` selects CUB-200-2011's classes into
a dataset folder (manifest.csv + images + dataset.json, the contract fgvc reads; `folder`
writes it, `classes` is the class selection), `datasets/` holds the registry and the other
datasets' readers (FGVC-Aircraft, Stanford Cars, Flowers-102, Oxford-IIIT Pets, NABirds;
`archives` unpacks their archives safely), `verify` checks a folder, `prepare` chains them for
`make data`, and `synthetic` / `synthetic_layouts` write tiny look-alikes for tests.
"""
