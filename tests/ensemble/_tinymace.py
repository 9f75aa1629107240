"""Build and save a tiny (untrained, random) MACE model: the real mace-torch loading and force
path without foundation-model weights (none can be downloaded here)."""

from __future__ import annotations


def save_tiny_mace(path, z: int = 32, seed: int = 0) -> str:
    import numpy as np
    import torch
    from e3nn import o3
    from mace import modules

    torch.manual_seed(seed)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.ScaleShiftMACE(
        r_max=4.5,
        num_bessel=4,
        num_polynomial_cutoff=5,
        max_ell=1,
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=1,
        num_elements=1,
        hidden_irreps=o3.Irreps("4x0e + 4x1o"),
        MLP_irreps=o3.Irreps("4x0e"),
        gate=torch.nn.functional.silu,
        atomic_energies=np.array([-1.0]),
        avg_num_neighbors=16.0,
        atomic_numbers=[z],
        correlation=2,
        radial_type="bessel",
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )
    model = model.double()
    torch.save(model, str(path))
    return str(path)
