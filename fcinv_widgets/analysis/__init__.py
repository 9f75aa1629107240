"""Stage III analyses: noise model, iterative refinement (and, as they land, full S(Q,E)
simulation and folding, single-orientation scans, experimental readers, latent analysis)."""
