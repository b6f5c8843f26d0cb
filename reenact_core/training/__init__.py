"""Training: the generic loop (checkpoints, resume, DDP, logs), the directions trainer and its command, Δp
sampling and ground truth, the training losses (FLAME shape/eye/mouth, identity, LPIPS, pixel)."""
