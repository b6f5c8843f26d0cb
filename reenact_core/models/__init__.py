"""Networks of the method, each with its model-kind declaration (``KIND``): the e4e inversion encoder, DECA's
E_flame, the direction matrix A with its normaliser, StyleGAN2, LPIPS and the FSR refinement encoder E_F. Pure PyTorch: this package imports
nothing of the library but ``errors``."""
