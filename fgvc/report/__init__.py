"""Reporting: statistics, figures, feature embeddings and comparisons of benchmark results.

Entry points (import them from their modules; this package stays import-free so that
`fgvc --help` is fast): `fgvc.report.report.write_report`, `fgvc.report.visualize.visualize`,
`fgvc.report.compare.compare`, and the CLI wiring in `fgvc.cli.report`.
"""
