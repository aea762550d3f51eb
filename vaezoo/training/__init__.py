"""Training: the one generic loop, resuming, non-finite checks, stop signals, torchrun, random states."""
