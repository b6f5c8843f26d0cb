"""Training: Δp sampling and ground truth, the training losses (FLAME shape/eye/mouth, identity, LPIPS, pixel)."""
