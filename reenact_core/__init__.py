"""Latent Reenact core library."""
