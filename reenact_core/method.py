"""Constants of the method itself, each with its source (``spec`` = the reference-method specification).

Importing this module imports nothing else; every other module takes these numbers from here.
"""
from __future__ import annotations

TRUNCATION = 0.7        # ψ toward the mean latent w̄, at inference and in tuning (spec §1.6, §1.12: truncation=0.7)
CROP_SIZE = 256         # side of the reference crop (official `crop_using_landmarks`, image_size = 256; spec §1.2)
TUNE_STEPS = 200        # generator tuning steps of "w/ opt." reenactment (spec §1.6: opt_steps = 200)
