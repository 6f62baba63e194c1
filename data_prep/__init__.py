"""data_prep: from the official CUB-200-2011 archive to a verified dataset folder.

`download` fetches and checks the archive, `carve` selects classes into a dataset folder
(manifest.csv + images + dataset.json, the contract fgvc reads), `verify` checks one,
`prepare` chains them for `make data`, and `synthetic` writes a tiny look-alike for tests.
"""
