"""Units and conversions. Internal units: Å, amu, eV/Å² (force constants), meV (energies).

Frequencies follow phonopy: sqrt(eigenvalue of D in eV/Å²/amu) × VASP_TO_THZ gives THz.
"""

from __future__ import annotations

import math

# Physical constants (CODATA 2018), as in phonopy's physical_units.
_EV = 1.602176634e-19  # J
_AMU = 1.66053906660e-27  # kg
_ANGSTROM = 1e-10  # m
_PLANCK = 6.62607015e-34  # J s

#: sqrt(eV / (Å² amu)) expressed in THz (angular frequency / 2π).
VASP_TO_THZ = math.sqrt(_EV / (_ANGSTROM**2 * _AMU)) / (2 * math.pi) / 1e12
#: 1 THz in meV (h ν).
THZ_TO_MEV = _PLANCK * 1e12 / _EV * 1e3
MEV_TO_THZ = 1.0 / THZ_TO_MEV
#: sqrt(eigenvalue in eV/Å²/amu) -> meV.
SQRT_EIG_TO_MEV = VASP_TO_THZ * THZ_TO_MEV
#: Boltzmann constant in meV/K.
KB_MEV = 8.617333262e-2
#: neutron: E (meV) = 2.0721 k² (Å⁻¹)
NEUTRON_E_TO_K2 = 1.0 / 2.0721247
