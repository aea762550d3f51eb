"""Files: the run folder, safetensors weights and checkpoints, loading and exporting models."""
