"""Clean drawings of the 43 GTSRB signs, used by the synthetic dataset (synthetic.py).

Each class is drawn as the real sign looks, simplified: red-ring speed limits with their numbers,
red warning triangles with a black pictogram, blue mandatory discs with white arrows, the stop
octagon, yield, the priority diamond, and the white "end of" discs with black stripes. Drawings are
made at twice the template size and halved, because Pillow draws without anti-aliasing, and kept in
memory: three variants per class (font, ring width) are all the dataset needs.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

from worker.pipelines.traffic_signs.labels import N_CLASSES

RED, BLUE, YELLOW = (200, 25, 35), (25, 80, 170), (245, 185, 20)
WHITE, BLACK, GREY = (245, 245, 238), (22, 22, 22), (125, 125, 125)
VARIANTS = 3  # font and ring-width variants per class
TEMPLATE_SIZE = 128
_DRAW_SIZE = 2 * TEMPLATE_SIZE


@lru_cache(maxsize=N_CLASSES * VARIANTS)
def template(class_id: int, variant: int) -> Image.Image:
    """An RGBA drawing of the sign of `class_id`, TEMPLATE_SIZE square, transparent around it."""
    canvas = _Canvas(variant)
    _draw_class(canvas, class_id)
    return canvas.image.resize((TEMPLATE_SIZE, TEMPLATE_SIZE), Image.Resampling.LANCZOS)


def _font_path(name: str) -> str:
    import matplotlib  # only for the DejaVu fonts it ships

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)


class _Canvas:
    """A transparent square to draw one sign on, in unit coordinates (0..1)."""

    def __init__(self, variant: int):
        self.image = Image.new("RGBA", (_DRAW_SIZE, _DRAW_SIZE), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)
        self.variant = variant
        self.ring = (0.76, 0.72, 0.8)[variant]  # inner radius of red rings, relative to the sign
        self.font = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSansMono-Bold.ttf")[variant]

    def _xy(self, points):
        return [(x * _DRAW_SIZE, y * _DRAW_SIZE) for x, y in points]

    def _box(self, cx, cy, radius_x, radius_y=None):
        radius_y = radius_x if radius_y is None else radius_y
        left, top, right, bottom = cx - radius_x, cy - radius_y, cx + radius_x, cy + radius_y
        return [left * _DRAW_SIZE, top * _DRAW_SIZE, right * _DRAW_SIZE, bottom * _DRAW_SIZE]

    def disc(self, radius, fill, cx=0.5, cy=0.5):
        self.draw.ellipse(self._box(cx, cy, radius), fill=fill)

    def ring_outline(self, radius, fill, width, cx=0.5, cy=0.5):
        self.draw.ellipse(self._box(cx, cy, radius), outline=fill, width=round(width * _DRAW_SIZE))

    def hump(self, cx, base, half_width, height, fill):
        """The upper half of an ellipse standing on y = `base`."""
        self.draw.pieslice(self._box(cx, base, half_width, height), 180, 360, fill=fill)

    def rectangle(self, left, top, right, bottom, fill):
        self.polygon([(left, top), (right, top), (right, bottom), (left, bottom)], fill)

    def polygon(self, points, fill):
        self.draw.polygon(self._xy(points), fill=fill)

    def line(self, points, fill, width):
        self.draw.line(self._xy(points), fill=fill, width=round(width * _DRAW_SIZE), joint="curve")

    def arrow(self, points, fill, width, head=0.14):
        """A thick line along `points` ending in a triangular head."""
        (x0, y0), (x1, y1) = points[-2], points[-1]
        length = math.hypot(x1 - x0, y1 - y0)
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        base = (x1 - ux * head, y1 - uy * head)
        self.line([*points[:-1], base], fill, width)
        spread_x, spread_y = -uy * head * 0.7, ux * head * 0.7
        barbs = [(base[0] + spread_x, base[1] + spread_y), (base[0] - spread_x, base[1] - spread_y)]
        self.polygon([(x1, y1), *barbs], fill)

    def text(self, text, cx, cy, height, fill, max_width=0.6, font=None):
        """`text` scaled to `height` (squeezed to `max_width` if wider), centred on (cx, cy)."""
        face = ImageFont.truetype(_font_path(font or self.font), 160)
        left, top, right, bottom = face.getbbox(text)
        mask = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(mask).text((-left, -top), text, font=face, fill=255)
        target_height = height * _DRAW_SIZE
        target_width = min(mask.width * target_height / mask.height, max_width * _DRAW_SIZE)
        size = (max(1, round(target_width)), max(1, round(target_height)))
        mask = mask.resize(size, Image.Resampling.LANCZOS)
        corner = (round(cx * _DRAW_SIZE - size[0] / 2), round(cy * _DRAW_SIZE - size[1] / 2))
        self.image.paste(Image.new("RGBA", size, fill), corner, mask)

    # Sign bodies --------------------------------------------------------------------------------

    def red_ring(self):
        self.disc(0.5, WHITE)
        self.disc(0.47, RED)
        self.disc(0.47 * self.ring, WHITE)

    def blue_disc(self):
        self.disc(0.5, WHITE)
        self.disc(0.47, BLUE)

    def end_disc(self):
        """White disc with a thin grey rim: the body of the "end of ..." signs."""
        self.disc(0.5, WHITE)
        self.ring_outline(0.47, GREY, 0.015)

    def end_stripes(self, count):
        """The thin black diagonal stripes that cancel an "end of ..." sign's content."""
        for index in range(count):
            offset = (index - (count - 1) / 2) * 0.035
            half = math.sqrt(max(0.0, 0.45**2 - offset**2))
            center = (0.5 + offset / math.sqrt(2), 0.5 + offset / math.sqrt(2))
            along = (1 / math.sqrt(2), -1 / math.sqrt(2))
            start = (center[0] - along[0] * half, center[1] - along[1] * half)
            end = (center[0] + along[0] * half, center[1] + along[1] * half)
            self.line([start, end], BLACK, 0.014)

    def triangle(self, pointing_up=True):
        outer = [(0.5, 0.04), (0.98, 0.9), (0.02, 0.9)]
        inner = [(0.5, 0.25), (0.8, 0.78), (0.2, 0.78)]
        if not pointing_up:
            outer = [(x, 0.94 - y) for x, y in outer]
            inner = [(x, 0.94 - y) for x, y in inner]
        self.polygon(outer, RED)
        self.line([*outer, outer[0]], WHITE, 0.025)
        self.polygon(inner, WHITE)

    def vehicle(self, cx, fill, truck=False):
        """A car or lorry seen from behind, as on the no-passing signs."""
        half, top = (0.11, 0.32) if truck else (0.085, 0.4)
        self.rectangle(cx - half, top, cx + half, 0.62, fill)
        self.rectangle(cx - half * 0.9, 0.62, cx - half * 0.4, 0.68, fill)  # wheels
        self.rectangle(cx + half * 0.4, 0.62, cx + half * 0.9, 0.68, fill)
        if not truck:
            self.rectangle(cx - half * 0.7, top + 0.03, cx + half * 0.7, top + 0.09, WHITE)  # rear window

    def person(self, cx, scale=1.0, base=0.76):
        """A walking stick figure for the pedestrian and children signs."""
        s = scale
        self.disc(0.035 * s, BLACK, cx, base - 0.3 * s)
        self.line([(cx, base - 0.25 * s), (cx - 0.01 * s, base - 0.12 * s)], BLACK, 0.04 * s)
        self.line([(cx - 0.01 * s, base - 0.12 * s), (cx - 0.06 * s, base)], BLACK, 0.03 * s)
        self.line([(cx - 0.01 * s, base - 0.12 * s), (cx + 0.05 * s, base)], BLACK, 0.03 * s)
        arms = [(cx - 0.06 * s, base - 0.15 * s), (cx, base - 0.22 * s), (cx + 0.06 * s, base - 0.17 * s)]
        self.line(arms, BLACK, 0.025 * s)


def _draw_class(canvas: _Canvas, class_id: int) -> None:
    c = canvas
    speed_limits = {0: "20", 1: "30", 2: "50", 3: "60", 4: "70", 5: "80", 7: "100", 8: "120"}
    if class_id in speed_limits:
        c.red_ring()
        c.text(speed_limits[class_id], 0.5, 0.5, 0.34, BLACK, max_width=0.56)
    elif class_id in (6, 32, 41, 42):  # end of 80 / of all limits / of no passing (lorries)
        c.end_disc()
        if class_id == 6:
            c.text("80", 0.5, 0.5, 0.34, GREY, max_width=0.5)
        elif class_id in (41, 42):
            c.vehicle(0.36, GREY, truck=class_id == 42)
            c.vehicle(0.64, GREY)
        c.end_stripes(5 if class_id == 32 else 3)
    elif class_id in (9, 10, 15, 16):  # prohibitions in a red ring
        c.red_ring()
        if class_id in (9, 10):
            c.vehicle(0.36, RED, truck=class_id == 10)
            c.vehicle(0.64, BLACK)
        elif class_id == 16:
            c.vehicle(0.5, BLACK, truck=True)
    elif class_id == 12:  # priority road: yellow diamond in white
        c.polygon([(0.5, 0.01), (0.99, 0.5), (0.5, 0.99), (0.01, 0.5)], WHITE)
        c.line([(0.5, 0.01), (0.99, 0.5), (0.5, 0.99), (0.01, 0.5), (0.5, 0.01)], GREY, 0.012)
        c.polygon([(0.5, 0.17), (0.83, 0.5), (0.5, 0.83), (0.17, 0.5)], YELLOW)
    elif class_id == 13:
        c.triangle(pointing_up=False)
    elif class_id == 14:  # stop: red octagon
        angles = [math.radians(22.5 + 45 * k) for k in range(8)]
        octagon = [(0.5 + 0.5 * math.cos(angle), 0.5 + 0.5 * math.sin(angle)) for angle in angles]
        c.polygon(octagon, WHITE)
        c.polygon([(0.5 + (x - 0.5) * 0.93, 0.5 + (y - 0.5) * 0.93) for x, y in octagon], RED)
        c.text("STOP", 0.5, 0.5, 0.26, WHITE, max_width=0.74, font="DejaVuSans-Bold.ttf")
    elif class_id == 17:  # no entry: red disc, white bar
        c.disc(0.5, WHITE)
        c.disc(0.47, RED)
        c.rectangle(0.18, 0.42, 0.82, 0.58, WHITE)
    elif 18 <= class_id <= 31 or class_id == 11:
        c.triangle()
        _draw_warning(c, class_id)
    else:  # 33..40: mandatory directions, white arrows on blue
        c.blue_disc()
        _draw_mandatory(c, class_id)


def _draw_warning(c: _Canvas, class_id: int) -> None:
    """The black pictogram inside a warning triangle; the triangle's inside spans y 0.3..0.78."""
    if class_id == 11:  # right-of-way: a thick road crossed by a thin one
        c.line([(0.5, 0.36), (0.5, 0.74)], BLACK, 0.06)
        c.line([(0.38, 0.58), (0.62, 0.58)], BLACK, 0.035)
    elif class_id == 18:
        c.text("!", 0.5, 0.58, 0.3, BLACK, font="DejaVuSans-Bold.ttf")
    elif class_id in (19, 20):
        sign = -1 if class_id == 19 else 1
        bend = [(0.5 - 0.05 * sign, 0.74), (0.5 - 0.05 * sign, 0.58), (0.5 + 0.1 * sign, 0.44)]
        c.arrow(bend, BLACK, 0.04, head=0.09)
    elif class_id == 21:
        c.arrow([(0.54, 0.75), (0.54, 0.66), (0.44, 0.57), (0.54, 0.48), (0.47, 0.4)], BLACK, 0.035, head=0.08)
    elif class_id == 22:  # bumpy road: two humps
        c.rectangle(0.3, 0.72, 0.7, 0.75, BLACK)
        for cx in (0.41, 0.59):
            c.hump(cx, 0.72, 0.08, 0.1, BLACK)
    elif class_id == 23:  # slippery road: a car and its skid marks
        c.polygon([(0.42, 0.44), (0.58, 0.44), (0.62, 0.56), (0.38, 0.56)], BLACK)
        c.line([(0.38, 0.74), (0.43, 0.66), (0.47, 0.72), (0.5, 0.62)], BLACK, 0.022)
        c.line([(0.53, 0.74), (0.58, 0.66), (0.62, 0.72), (0.65, 0.62)], BLACK, 0.022)
    elif class_id == 24:  # road narrows on the right
        c.line([(0.42, 0.76), (0.42, 0.4)], BLACK, 0.04)
        c.line([(0.6, 0.76), (0.6, 0.62), (0.52, 0.52), (0.52, 0.4)], BLACK, 0.04)
    elif class_id == 25:
        c.text("\u2692", 0.5, 0.6, 0.26, BLACK, font="DejaVuSans.ttf")  # hammer and pick
    elif class_id == 26:  # traffic signals: red, amber, green lamps
        c.rectangle(0.44, 0.36, 0.56, 0.76, BLACK)
        for cy, colour in ((0.43, RED), (0.56, YELLOW), (0.69, (30, 160, 60))):
            c.disc(0.045, colour, 0.5, cy)
    elif class_id == 27:
        c.person(0.5)
    elif class_id == 28:
        c.person(0.43)
        c.person(0.58, scale=0.75)
    elif class_id == 29:  # bicycle
        for cx in (0.4, 0.6):
            c.ring_outline(0.07, BLACK, 0.02, cx, 0.68)
        c.line([(0.4, 0.68), (0.48, 0.56), (0.6, 0.68), (0.56, 0.52), (0.48, 0.56)], BLACK, 0.02)
    elif class_id == 30:
        c.text("\u2744", 0.5, 0.59, 0.3, BLACK, font="DejaVuSans.ttf")  # snowflake
    else:  # 31: wild animal
        c.text("\u265e", 0.5, 0.6, 0.3, BLACK, font="DejaVuSans.ttf")


def _draw_mandatory(c: _Canvas, class_id: int) -> None:
    """The white arrow(s) of a blue mandatory sign; left variants are mirrored right ones."""
    if class_id in (34, 37, 39):
        _draw_mandatory(c, class_id - 1)
        c.image = ImageOps.mirror(c.image)
        return
    if class_id == 33:  # turn right ahead
        c.arrow([(0.4, 0.8), (0.4, 0.5), (0.78, 0.5)], WHITE, 0.09, head=0.17)
    elif class_id == 35:  # ahead only
        c.arrow([(0.5, 0.82), (0.5, 0.18)], WHITE, 0.1, head=0.2)
    elif class_id == 36:  # straight or right
        c.arrow([(0.42, 0.84), (0.42, 0.18)], WHITE, 0.08, head=0.16)
        c.arrow([(0.42, 0.62), (0.52, 0.5), (0.8, 0.5)], WHITE, 0.08, head=0.15)
    elif class_id == 38:  # keep right
        c.arrow([(0.3, 0.3), (0.7, 0.7)], WHITE, 0.1, head=0.2)
    else:  # 40: roundabout, three arrows chasing each other anticlockwise
        for start in (90, 210, 330):
            angles = [math.radians(degrees) for degrees in range(start, start + 85, 12)]
            c.arrow([(0.5 + 0.24 * math.cos(a), 0.5 - 0.24 * math.sin(a)) for a in angles], WHITE, 0.065, head=0.12)
