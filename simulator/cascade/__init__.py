"""The recommendation cascade: stages in order, each its own service, under one end-to-end SLO
(``[[stages]]`` in a scenario; see docs/cascade.md)."""
