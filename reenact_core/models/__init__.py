"""Networks of the method: the e4e inversion encoder, DECA's E_flame, the direction matrix A and StyleGAN2."""
