"""Mixed-dimension embeddings (Ginart et al. 2021): larger (less popular per id) tables get narrower rows.

dim_f = clip(round(D * (rows_min / rows_f) ** alpha), 1, D); a table narrower than D is followed by
a [dim_f, D] projection so the interaction still sees D-wide vectors.
"""

from __future__ import annotations


def mixed_dims(table_sizes: tuple[int, ...], dim: int, alpha: float) -> list[int]:
    smallest = min(table_sizes)
    return [max(1, min(dim, round(dim * (smallest / n) ** alpha))) for n in table_sizes]
