"""The prize catalogue: what W can hand out, and how often."""

from __future__ import annotations

import dataclasses
import random

_random = random.SystemRandom()

RGB = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Prize:
    """One prize: its name, its weight in the draw and the look of its picture."""

    name: str
    weight: int
    icon: str
    top: RGB
    bottom: RGB


CATALOGUE: tuple[Prize, ...] = (
    Prize("Sticker pack", 30, "star", (255, 214, 102), (255, 159, 67)),
    Prize("Mug", 24, "mug", (116, 185, 255), (9, 132, 227)),
    Prize("T-shirt", 18, "tshirt", (85, 239, 196), (0, 184, 148)),
    Prize("Voucher 10 EUR", 14, "voucher10", (253, 121, 168), (232, 67, 147)),
    Prize("Tote bag", 8, "bag", (162, 155, 254), (108, 92, 231)),
    Prize("Voucher 50 EUR", 4, "voucher50", (255, 118, 117), (214, 48, 49)),
    Prize("Headphones", 2, "headphones", (99, 110, 114), (45, 52, 54)),
)
"""Common small prizes first; the big ones are rare."""


def draw() -> Prize:
    """A prize drawn at random, weighted by the catalogue (from the OS's entropy source)."""
    return _random.choices(CATALOGUE, weights=[prize.weight for prize in CATALOGUE])[0]
