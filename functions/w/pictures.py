"""The picture of a prize: a JPEG drawn with Pillow, no image file involved.

The background of each prize (gradient, confetti, icon, name) is drawn once
and kept: it is a constant. Each call only writes the customer's line on a
copy and encodes it: about a millisecond of CPU.
"""

from __future__ import annotations

import functools
import io
import math
import random
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont
from prizes import RGB, Prize

WIDTH, HEIGHT = 400, 300
QUALITY = 80
WHITE = (255, 255, 255)
CENTRE = (WIDTH // 2, 112)

Icon = Callable[[ImageDraw.ImageDraw, RGB], None]
# A T-shirt's outline around CENTRE: its left half, mirrored, then down to the collar.
_LEFT = ((-22, -56), (-70, -38), (-86, -2), (-54, 10), (-48, -8), (-48, 58))
TSHIRT = _LEFT + tuple((-x, y) for x, y in reversed(_LEFT)) + ((0, -40),)


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _star(draw: ImageDraw.ImageDraw, accent: RGB) -> None:
    cx, cy = CENTRE
    points = []
    for i in range(10):
        radius = 62 if i % 2 == 0 else 26
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    draw.polygon(points, fill=WHITE, outline=accent, width=3)
    draw.ellipse((cx - 9, cy - 9, cx + 9, cy + 9), fill=accent)


def _mug(draw: ImageDraw.ImageDraw, accent: RGB) -> None:
    cx, cy = CENTRE
    draw.ellipse((cx + 18, cy - 28, cx + 68, cy + 26), outline=WHITE, width=12)
    draw.rounded_rectangle((cx - 48, cy - 44, cx + 38, cy + 52), radius=12, fill=WHITE)
    draw.rectangle((cx - 48, cy - 8, cx + 38, cy + 4), fill=accent)
    for dx in (-26, -4, 18):
        draw.arc((cx + dx - 8, cy - 78, cx + dx + 8, cy - 52), 100, 260, fill=WHITE, width=4)


def _tshirt(draw: ImageDraw.ImageDraw, accent: RGB) -> None:
    cx, cy = CENTRE
    draw.polygon([(cx + x, cy + y) for x, y in TSHIRT], fill=WHITE, outline=accent, width=3)
    draw.text((cx, cy + 14), "T", font=_font(44), fill=accent, anchor="mm")


def _voucher(amount: str) -> Icon:
    def icon(draw: ImageDraw.ImageDraw, accent: RGB) -> None:
        cx, cy = CENTRE
        draw.rounded_rectangle((cx - 92, cy - 48, cx + 92, cy + 48), radius=10, fill=WHITE)
        for y in range(cy - 40, cy + 40, 12):
            draw.line((cx + 46, y, cx + 46, y + 6), fill=accent, width=3)
        draw.text((cx - 22, cy - 4), amount, font=_font(46), fill=accent, anchor="mm")
        draw.text((cx - 22, cy + 32), "EUR", font=_font(16), fill=accent, anchor="mm")
        draw.ellipse((cx + 58, cy - 12, cx + 82, cy + 12), outline=accent, width=4)

    return icon


def _bag(draw: ImageDraw.ImageDraw, accent: RGB) -> None:
    cx, cy = CENTRE
    draw.arc((cx - 34, cy - 72, cx + 34, cy - 4), 180, 360, fill=WHITE, width=8)
    draw.polygon([(cx - 62, cy - 38), (cx + 62, cy - 38), (cx + 72, cy + 58), (cx - 72, cy + 58)], fill=WHITE)
    draw.ellipse((cx - 18, cy - 2, cx + 18, cy + 34), outline=accent, width=5)


def _headphones(draw: ImageDraw.ImageDraw, accent: RGB) -> None:
    cx, cy = CENTRE
    draw.arc((cx - 70, cy - 66, cx + 70, cy + 74), 180, 360, fill=WHITE, width=14)
    for side in (-1, 1):
        x = cx + side * 64
        draw.rounded_rectangle((x - 18, cy - 4, x + 18, cy + 58), radius=12, fill=WHITE, outline=accent, width=3)


ICONS: dict[str, Icon] = {
    "star": _star,
    "mug": _mug,
    "tshirt": _tshirt,
    "voucher10": _voucher("10"),
    "voucher50": _voucher("50"),
    "bag": _bag,
    "headphones": _headphones,
}


def _gradient(top: RGB, bottom: RGB) -> Image.Image:
    mask = Image.linear_gradient("L").resize((WIDTH, HEIGHT))
    return Image.composite(Image.new("RGB", (WIDTH, HEIGHT), bottom), Image.new("RGB", (WIDTH, HEIGHT), top), mask)


@functools.cache
def background(prize: Prize) -> Image.Image:
    """The picture of ``prize`` without the customer's line (drawn once per prize)."""
    image = _gradient(prize.top, prize.bottom)
    draw = ImageDraw.Draw(image)
    confetti = random.Random(prize.name)
    palette = [WHITE, (253, 203, 110), (255, 234, 167), (129, 236, 236)]
    for _ in range(40):
        x = confetti.choice((confetti.randrange(0, 90), confetti.randrange(310, WIDTH)))
        y, r = confetti.randrange(HEIGHT), confetti.randrange(2, 6)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=confetti.choice(palette))
    draw.text((WIDTH // 2, 20), "TOMBOLA  ·  YOU WON", font=_font(15), fill=WHITE, anchor="mm")
    ICONS[prize.icon](draw, prize.bottom)
    name = (WIDTH // 2, 210)
    draw.text((name[0] + 2, name[1] + 2), prize.name, font=_font(32), fill=(45, 52, 54), anchor="mm")
    draw.text(name, prize.name, font=_font(32), fill=WHITE, anchor="mm")
    draw.rounded_rectangle((100, 246, 300, 280), radius=17, fill=WHITE)
    return image


def render(prize: Prize, customer_id: int) -> bytes:
    """The JPEG picture of ``prize`` won by customer ``customer_id``."""
    image = background(prize).copy()
    draw = ImageDraw.Draw(image)
    draw.text((WIDTH // 2, 263), f"Customer {customer_id}", font=_font(18), fill=prize.bottom, anchor="mm")
    output = io.BytesIO()
    image.save(output, format="JPEG", quality=QUALITY)
    return output.getvalue()
