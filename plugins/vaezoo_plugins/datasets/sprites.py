"""Drawing dSprites procedurally: three shapes, scaled, rotated and placed on a 64x64 canvas.

The geometry was measured on the 320 frames of the official dataset's animation (dsprites.gif, made
from the dataset's images): a sprite's centre sits at 16 + 32 * pos pixels (posX along columns,
posY along rows, downwards), positive orientation turns it anticlockwise as displayed, and a pixel
is on when its centre lies inside the shape. At scale 1 the square's half side is 9.6 pixels, the
ellipse's semi-axes 12.8 and 7.2 pixels (long axis horizontal at orientation 0), and the heart two
discs of radius 5.2 over a point, about 20 by 17 pixels, lobes up; these sizes were fitted to the
animation's frames. How far the images are from the official ones: docs/disentanglement.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

SIZE = 64
#: The five factors in the official order (colour, always white, is left out as disentanglement_lib does).
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_VALUES: tuple[tuple[float, ...], ...] = (
    (1.0, 2.0, 3.0),  # square, ellipse, heart: the official file's values
    tuple(0.5 + 0.1 * i for i in range(6)),
    tuple(2 * math.pi * i / 39 for i in range(40)),  # [0, 2 pi] with both ends: codes 0 and 39 draw the same image
    tuple(i / 31 for i in range(32)),
    tuple(i / 31 for i in range(32)),
)
SIZES = tuple(len(v) for v in FACTOR_VALUES)  # (3, 6, 40, 32, 32): 737,280 combinations
SHAPES = ("square", "ellipse", "heart")  # shape codes 0, 1, 2

SQUARE_HALF = 9.6
ELLIPSE_AXES = (12.8, 7.2)
# The heart: two discs of radius HEART_RADIUS centred at (+-HEART_LOBE_X, HEART_LOBE_Y) and the point
# (0, -HEART_TIP), joined by their convex hull below the discs' centres (pixels at scale 1, y up).
HEART_RADIUS, HEART_LOBE_X, HEART_LOBE_Y, HEART_TIP = 5.2, 4.6, 4.0, 8.75
#: The farthest any shape reaches from its centre at scale 1 (the square's corner).
REACH = max(SQUARE_HALF * math.sqrt(2), *ELLIPSE_AXES, math.hypot(HEART_LOBE_X, HEART_LOBE_Y) + HEART_RADIUS,
            HEART_TIP)


def centre(pos: Tensor) -> Tensor:
    """Pixel coordinate (pixel k spans [k, k+1)) of the sprite centre for positions in [0, 1]."""
    return 16.0 + 32.0 * pos


def inside(shape: int, u: Tensor, v: Tensor) -> Tensor:
    """Whether points (u, v), in scale-1 sprite coordinates (u right, v up), lie inside the shape."""
    if SHAPES[shape] == "square":
        return (u.abs() <= SQUARE_HALF) & (v.abs() <= SQUARE_HALF)
    if SHAPES[shape] == "ellipse":
        a, b = ELLIPSE_AXES
        return (u / a).square() + (v / b).square() <= 1.0
    return _heart(u, v)


def _heart(u: Tensor, v: Tensor) -> Tensor:
    r, x, y, tip = HEART_RADIUS, HEART_LOBE_X, HEART_LOBE_Y, HEART_TIP
    u = u.abs()  # the heart is symmetric: test the right half only
    lobe = (u - x).square() + (v - y).square() <= r * r
    # The hull's right edge runs from the tip (0, -tip) to its tangent point on the right disc.
    dx, dy = x, y + tip
    distance = math.hypot(dx, dy)
    turn = math.asin(r / distance)
    angle = math.atan2(dy, dx) - turn  # direction of the tangent line from the tip
    nx, ny = math.sin(angle), -math.cos(angle)  # its outward normal
    below_tangent = nx * u + ny * (v + tip) <= 0.0
    tangent_y = -tip + math.sqrt(distance**2 - r * r) * math.sin(angle)
    body = (v <= y) & below_tangent & ((v <= tangent_y) | (u <= x))
    return lobe | body


def render(shapes: Sequence[int], scales: Sequence[int], orientations: Sequence[int],
           xs: Sequence[int], ys: Sequence[int]) -> Tensor:
    """Images [n, 1, 64, 64] uint8 (0 or 255) of every combination of the given factor codes.

    The order is the official one: shape slowest, posY fastest. Each sprite is drawn in a window
    around its centre wide enough for its farthest reach, all positions of one orientation at once.
    On one thread: the thousands of small tensor operations gain little from more (2.8 against
    3.8 s on two idle cores) and lose much when a core is busy (77 s on two threads against 4 s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _render(shapes, scales, orientations, xs, ys)
    finally:
        torch.set_num_threads(threads)


def _render(shapes: Sequence[int], scales: Sequence[int], orientations: Sequence[int],
            xs: Sequence[int], ys: Sequence[int]) -> Tensor:
    counts = (len(shapes), len(scales), len(orientations), len(xs), len(ys))
    out = torch.zeros(*counts, SIZE, SIZE, dtype=torch.uint8)
    angle = torch.tensor([FACTOR_VALUES[2][o] for o in orientations], dtype=torch.float64)
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    cx = centre(torch.tensor([FACTOR_VALUES[3][i] for i in xs], dtype=torch.float64))
    cy = centre(torch.tensor([FACTOR_VALUES[4][j] for j in ys], dtype=torch.float64))
    for si, scale_code in enumerate(scales):
        scale = FACTOR_VALUES[1][scale_code]
        width = math.ceil(2 * REACH * scale) + 2
        left, dx = _window(cx, scale, width)  # [X] first columns, [X, W] pixel centres' offsets from the sprite centre
        top, dy = _window(cy, scale, width)
        # Turn the offsets by -orientation and undo the scale (v points up): u and v are sums of a
        # column term [O, X, W] and a row term [O, Y, W].
        u_col, v_col = (dx * cos / scale).float(), (-dx * sin / scale).float()
        u_row, v_row = (-dy * sin / scale).float(), (-dy * cos / scale).float()
        windows = torch.empty(len(shapes), *counts[2:], width, width, dtype=torch.bool)
        for o in range(len(orientations)):
            u = u_col[o, :, None, None, :] + u_row[o, None, :, :, None]  # [X, Y, W rows, W cols]
            v = v_col[o, :, None, None, :] + v_row[o, None, :, :, None]
            for hi, shape in enumerate(shapes):
                windows[hi, o] = inside(shape, u, v)
        windows = windows.view(torch.uint8).mul_(255)
        for i, first_col in enumerate(left.tolist()):
            for j, first_row in enumerate(top.tolist()):
                out[:, si, :, i, j, first_row:first_row + width, first_col:first_col + width] = windows[:, :, i, j]
    return out.view(-1, 1, SIZE, SIZE)


def _window(centres: Tensor, scale: float, width: int) -> tuple[Tensor, Tensor]:
    """First pixel of a `width`-pixel window holding each sprite, and its pixel centres' offsets."""
    first = torch.floor(centres - REACH * scale).clamp(max=SIZE - width).to(torch.int64)
    offsets = first[:, None] + torch.arange(width) + 0.5 - centres[:, None]
    return first, offsets


def grid_codes(sizes: Sequence[int] = SIZES) -> Tensor:
    """Every combination of factor codes [prod(sizes), F] int64, the last factor fastest."""
    return torch.cartesian_prod(*(torch.arange(n) for n in sizes)).reshape(-1, len(sizes))
