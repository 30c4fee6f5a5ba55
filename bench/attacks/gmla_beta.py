"""GMLA_β (Supp. §3, Eq. 12): MLA-C's step on the consistent target set Ψ = h(Ω, G).

min_e −L_bce(x + e, Ψ) + L_bce(x + e, Ψ̄) s.t. ‖e‖∞ ≤ ε with the raw (unnormalised)
gradients: the non-targets are held in place, but their gradient opposes the targets'.
"""

from __future__ import annotations

from bench.attacks import register_attack
from bench.attacks.mla_c import MLAC


@register_attack("gmla-beta")
class GMLABeta(MLAC):
    """GMLA_β: e = sgn(g_Ψ + g_Ψ̄)."""

    semantic = True
