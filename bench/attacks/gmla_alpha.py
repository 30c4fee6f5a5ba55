"""GMLA_α (Supp. §3, Eq. 11): MLA-U's step on the consistent target set Ψ = h(Ω, G).

min_e −L_bce(x + e, Ψ) s.t. ‖e‖∞ ≤ ε: the knowledge graph chooses which labels flip, but
nothing holds the non-targets Ψ̄ in place.
"""

from __future__ import annotations

from bench.attacks import register_attack
from bench.attacks.mla_u import MLAU


@register_attack("gmla-alpha")
class GMLAAlpha(MLAU):
    """GMLA_α: e = sgn(g_Ψ)."""

    semantic = True
