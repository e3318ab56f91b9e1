"""Calibration pipeline: a real DLRM-style model, its compressed variants, measurement, latency
fits, roofline projection to GPUs and a real-serving fidelity check. Needs torch (the
``calibration`` extra); nothing else in PeakSim imports this package's submodules except the
CLI command bodies."""
