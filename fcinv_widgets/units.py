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
#: ħ²/2 in amu · Å² · meV  (ħ²/(2 m E) in Å² for m in amu, E in meV)
HBAR2_OVER_2 = (1.054571817e-34) ** 2 / (_AMU * _EV * 1e-3 * _ANGSTROM**2) / 2.0
#: the ARCS resolution formula's own rounded neutron constants (pathSQE; kept as published):
#: v (m/s) = ARCS_V_AT_K1 · sqrt(E / ARCS_E_AT_K1), E in meV
ARCS_V_AT_K1 = 630.2
ARCS_E_AT_K1 = 2.072
