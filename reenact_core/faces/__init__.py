"""Face geometry: the 256-px reference crop from 68 landmarks and the DECA 224-px crop (landmark or canonical box),
tracking, smoothing and paste-back. Landmark detection itself is in ``reenact_core.landmarks``."""
