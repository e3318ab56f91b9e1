"""PeakSim analysis: queueing theory, statistics, plots and reports over results.

Nothing here imports the simulation engine: analysis reads results.
"""
