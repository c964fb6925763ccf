"""Drawing synthetic scenes: background, people (in depth order), occluders, camera noise.

Everything is drawn twice: shaded into the BGR image and flat into a *label mask* of the
same size, where each pixel holds who was drawn there last:

    0                      background (and clutter drawn before any person)
    1 + 16*k + part        body part `part` (index into body.PARTS) of the k-th person
    OBJECT_LABEL (255)     an object drawn over people (occluder, seat)

The annotation is read off the mask, so it is true to the drawing: a labelled joint whose
pixel shows one of its own body parts is visible (v=2), one covered by something drawn
later is v=1, one outside the image is unlabelled; the box is the tight box of the
person's pixels.

Coordinates here are continuous drawing coordinates where pixel (col, row) covers
[col, col+1) x [row, row+1); cv2 gets them shifted by half a pixel. The annotation written
for COCO subtracts that half pixel: a keypoint's x is the index of the pixel it is centred
on (hgpose's pixel convention, docs/architecture.md).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from hgpose.skeleton import NUM_JOINTS
from hgpose.synth import body as B

SHIFT = 4                     # cv2 sub-pixel bits
ONE = 1 << SHIFT
LABELS_PER_PERSON = 16
OBJECT_LABEL = 255
MAX_PEOPLE = 3
MIN_RADIUS_PX = 1.6           # limbs are never thinner than ~3 px
assert B.NUM_PARTS == LABELS_PER_PERSON

# Declared ranges of the per-person generating factors (documented in docs/synth.md).
SCALE_RANGE = (0.2, 1.1)      # standing height / image height
ROTATION_RANGE = (-30.0, 30.0)


# ------------------------------------------------------------------ colours
def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    """HSV (hue in degrees) -> BGR ints."""
    r, g, b = colorsys.hsv_to_rgb((h % 360.0) / 360.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return (int(b * 255 + 0.5), int(g * 255 + 0.5), int(r * 255 + 0.5))


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * factor))) for c in colour)


def _lift(colour, amount: float) -> tuple[int, int, int]:
    """Mix toward white by `amount` (a highlight)."""
    return tuple(int(c + (255 - c) * amount) for c in colour)


_DARK: dict = {}
_LIGHT: dict = {}


def _dark(colour):
    """Outline colour of a part (memoised: colours repeat within an image)."""
    v = _DARK.get(colour)
    if v is None:
        if len(_DARK) > 4096:
            _DARK.clear()
        v = _DARK[colour] = _shade(colour, 0.45)
    return v


def _light(colour):
    v = _LIGHT.get(colour)
    if v is None:
        if len(_LIGHT) > 4096:
            _LIGHT.clear()
        v = _LIGHT[colour] = _lift(colour, 0.3)
    return v


@dataclass
class Palette:
    skin: tuple
    hair: tuple
    shirt: tuple
    shoes: tuple
    arm: dict      # side -> (upper, lower)
    leg: dict      # side -> (upper, lower)


def sample_palette(rng) -> Palette:
    """Per-person colours. The person's LEFT limbs always take warm hues (red..yellow),
    the RIGHT limbs cool hues (cyan..violet), each randomised: a consistent cue a small
    network can use to tell left from right even from behind."""
    u = rng.uniform
    skin = _hsv(u(12, 32), u(0.25, 0.6), u(0.35, 0.95))
    hair = _hsv(u(15, 45), u(0.2, 0.7), u(0.08, 0.35)) if u() < 0.8 else _hsv(u(35, 50), u(0.2, 0.5), u(0.6, 0.9))
    shirt = _hsv(u(0, 360), u(0.15, 0.85), u(0.3, 0.95))
    shoes = _hsv(u(0, 360), u(0.0, 0.5), u(0.08, 0.35))
    arm, leg = {}, {}
    for side, (lo, hi) in (("left", (-25.0, 55.0)), ("right", (165.0, 265.0))):
        for table, (vlo, vhi) in ((arm, (0.55, 0.95)), (leg, (0.35, 0.8))):
            h, s, v = u(lo, hi), u(0.45, 0.95), u(vlo, vhi)
            table[side] = (_hsv(h, s, v * 0.85), _hsv(h + u(-8, 8), s * 0.9, min(1.0, v * 1.1)))
    return Palette(skin, hair, shirt, shoes, arm, leg)


# ------------------------------------------------------------------ primitives
# Every shape is a convex polygon computed here and filled by one cv2 call: a capsule is
# two half-circle arcs, an ellipse a ring of points. Points go to cv2 in fixed point
# (SHIFT bits), shifted by half a pixel (pixel centres at integers for cv2).
_ARCS = {n: [(math.cos(t), math.sin(t)) for t in np.linspace(-math.pi / 2, math.pi / 2, n)] for n in range(3, 11)}
_RINGS = {n: [(math.cos(t), math.sin(t)) for t in np.linspace(0, 2 * math.pi, n, endpoint=False)]
          for n in range(8, 33)}


def _fx(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    pts = np.empty((len(xs), 2), np.int32)
    pts[:, 0] = (xs - 0.5) * ONE
    pts[:, 1] = (ys - 0.5) * ONE
    return pts


def _fix(pts) -> np.ndarray:
    """Continuous coords [k,2] -> cv2 fixed-point ints."""
    pts = np.asarray(pts, np.float64)
    return _fx(pts[:, 0], pts[:, 1])


def capsule_points(ax: float, ay: float, bx: float, by: float, ra: float, rb: float,
                   inset: float | None = None):
    """Fixed-point outline of a tapered stick with round ends from a to b (radii ra, rb).

    With `inset`, also the outline of the same stick `inset` pixels thinner (one pass).
    Plain Python: for ~20 points it is faster than numpy.
    """
    dx, dy = bx - ax, by - ay
    n = math.hypot(dx, dy)
    ux, uy = (dx / n, dy / n) if n > 1e-9 else (1.0, 0.0)
    arc = _ARCS[min(10, max(3, int(max(ra, rb) * 0.4) + 3))]
    bx, by, ax, ay = (bx - 0.5) * ONE, (by - 0.5) * ONE, (ax - 0.5) * ONE, (ay - 0.5) * ONE
    ra, rb = ra * ONE, rb * ONE
    dirs = [(c * ux - s * uy, c * uy + s * ux) for c, s in arc]
    outer = [(int(bx + rb * vx), int(by + rb * vy)) for vx, vy in dirs]
    outer += [(int(ax - ra * vx), int(ay - ra * vy)) for vx, vy in dirs]
    if inset is None:
        return np.array(outer, np.int32)
    ia, ib = max(ONE * 0.5, ra - inset * ONE), max(ONE * 0.5, rb - inset * ONE)
    inner = [(int(bx + ib * vx), int(by + ib * vy)) for vx, vy in dirs]
    inner += [(int(ax - ia * vx), int(ay - ia * vy)) for vx, vy in dirs]
    return np.array(outer, np.int32), np.array(inner, np.int32)


def ellipse_points(cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
    """Fixed-point ring of an ellipse: semi-axis a along `angle` (radians), b across."""
    ring = _RINGS[min(32, max(8, int(max(a, b) * 0.8) + 8))]
    ca, sa = math.cos(angle) * ONE, math.sin(angle) * ONE
    cx, cy = (cx - 0.5) * ONE, (cy - 0.5) * ONE
    return np.array([(int(cx + a * c * ca - b * s * sa), int(cy + a * c * sa + b * s * ca)) for c, s in ring],
                    np.int32)


def _fill(img, pts: np.ndarray, colour, aa: bool = False) -> None:
    cv2.fillConvexPoly(img, pts, colour, cv2.LINE_AA if aa else cv2.LINE_8, SHIFT)


def _poly(img, pts, colour, aa: bool) -> None:
    _fill(img, _fix(pts), colour, aa)


# ------------------------------------------------------------------ a placed person
@dataclass
class Figure:
    """One person as it will be drawn: posed, projected and placed in the image."""

    pose: B.Pose
    body: B.Body3D
    palette: Palette
    yaw_deg: float
    scale: float                  # standing height / image height
    rotation_deg: float
    px: float                     # pixels per body unit (standing height in pixels)
    offset: np.ndarray            # image position of the body origin (pelvis)
    joints: np.ndarray            # [17,2] continuous image coordinates
    seat: bool = False
    parts: list = field(default_factory=list)   # draw list (see plan_parts), far to near

    def project(self, p3: np.ndarray) -> np.ndarray:
        """3-D camera-frame point(s) [...,3] -> image coordinates [...,2]."""
        p3 = np.asarray(p3, np.float64)
        r = math.radians(self.rotation_deg)
        c, s = math.cos(r) * self.px, math.sin(r) * self.px
        # counter-clockwise on screen (y points down)
        x = p3[..., 0] * c + p3[..., 1] * s + self.offset[0]
        y = -p3[..., 0] * s + p3[..., 1] * c + self.offset[1]
        return np.stack([x, y], -1)

    def project_vec(self, v3: np.ndarray) -> np.ndarray:
        """A 3-D direction -> its image-plane vector in pixels."""
        r = math.radians(self.rotation_deg)
        c, s = math.cos(r) * self.px, math.sin(r) * self.px
        return np.array([v3[0] * c + v3[1] * s, -v3[0] * s + v3[1] * c])

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Corners (min, max) of a box around the whole drawn figure."""
        pts = np.concatenate([self.joints, self.project(np.stack(list(self.body.points.values())))])
        pad = B.HEAD_RY * self.px * 1.3 + 2
        return pts.min(0) - pad, pts.max(0) + pad


def place_figure(rng, width, height, pose, build, palette, yaw, scale, rotation,
                 near: Figure | None = None) -> Figure:
    """Pose, project and place a person; `near`: put it overlapping that person."""
    body = B.pose_body(pose, build, yaw)
    px = scale * height
    fig = Figure(pose, body, palette, yaw, scale, rotation, px, np.zeros(2), np.zeros((NUM_JOINTS, 2)))
    fig.joints = fig.project(body.joints)
    lo, hi = fig.extent()
    size, mid = hi - lo, (hi + lo) / 2
    target = np.zeros(2)
    if near is not None:
        nlo, nhi = near.extent()
        nsize, nmid = nhi - nlo, (nhi + nlo) / 2
        sign = 1.0 if rng.uniform() < 0.5 else -1.0
        target[0] = nmid[0] + sign * rng.uniform(0.25, 0.8) * (nsize[0] + size[0]) / 2
        target[1] = nmid[1] + rng.uniform(-0.2, 0.2) * height
    else:
        for axis, extent in ((0, width), (1, height)):
            e = size[axis]
            if e <= extent:
                m = 0.15 * e  # a little of the person may leave the frame
                target[axis] = rng.uniform(e / 2 - m, extent - e / 2 + m)
            else:
                target[axis] = rng.uniform(extent - e / 2, e / 2)
    fig.offset = target - mid
    fig.joints = fig.project(body.joints)
    return fig


# depth biases (body units) that settle ties: arms over the torso, torso over the thighs
_BIAS = {"upper_arm": 0.015, "lower_arm": 0.017, "hand": 0.02, "thigh": -0.02, "shin": -0.018, "foot": -0.015}


def plan_parts(fig: Figure) -> list:
    """The figure's parts sorted far to near: (depth, part index, kind, geometry)."""
    b, px = fig.body, fig.px
    P, JI = B.PART_INDEX, B.JOINT_INDEX
    xy = fig.joints.tolist()
    z = b.joints[:, 2].tolist()
    names = list(b.points)
    extra = dict(zip(names, fig.project(np.stack([b.points[n] for n in names])).tolist()))
    ez = {n: float(b.points[n][2]) for n in names}
    pal = fig.palette
    parts = []

    def rad(r):
        return max(MIN_RADIUS_PX, r * px)

    def limb(part, kind, ja, jb, za, zb, colour):
        ra, rb = b.limb_radius[kind]
        parts.append(((za + zb) / 2 + _BIAS[kind], P[part], "limb",
                      (ja[0], ja[1], jb[0], jb[1], rad(ra), rad(rb), colour)))

    for side in ("left", "right"):
        sh, el, wr = JI[f"{side}_shoulder"], JI[f"{side}_elbow"], JI[f"{side}_wrist"]
        hp, kn, an = JI[f"{side}_hip"], JI[f"{side}_knee"], JI[f"{side}_ankle"]
        hand, foot = f"hand_{side}", f"foot_{side}"
        limb(f"upper_arm_{side}", "upper_arm", xy[sh], xy[el], z[sh], z[el], pal.arm[side][0])
        limb(f"lower_arm_{side}", "lower_arm", xy[el], xy[wr], z[el], z[wr], pal.arm[side][1])
        limb(hand, "hand", xy[wr], extra[hand], z[wr], ez[hand], pal.skin)
        limb(f"thigh_{side}", "thigh", xy[hp], xy[kn], z[hp], z[kn], pal.leg[side][0])
        limb(f"shin_{side}", "shin", xy[kn], xy[an], z[kn], z[an], pal.leg[side][1])
        limb(foot, "foot", xy[an], extra[foot], z[an], ez[foot], pal.shoes)
    # torso: each half is the convex hull of half of the shoulder- and hip-level sections
    for side, ts in (("left", _HALF_LEFT), ("right", _HALF_RIGHT)):
        cos, sin = np.cos(ts)[:, None], np.sin(ts)[:, None]
        pts3 = np.concatenate([c + cos * lat + sin * fwd for c, lat, fwd in b.torso_sections])
        hull = cv2.convexHull(fig.project(pts3).astype(np.float32)).reshape(-1, 2).astype(np.float64)
        parts.append((float(pts3[:, 2].mean()), P[f"torso_{side}"], "poly", (hull, pal.shirt)))
    rn = b.limb_radius["neck"]
    parts.append((min(ez["neck_base"], ez["head"]) - 0.05, P["neck"], "limb",
                  (*extra["neck_base"], *extra["head"], rad(rn[0]), rad(rn[1]), _shade(pal.skin, 0.85))))
    parts.append((ez["head"] + 0.1, P["head"], "head", None))
    parts.sort(key=lambda p: p[0])
    return parts


_HALF_LEFT = np.radians(np.linspace(-90.0, 90.0, 7))
_HALF_RIGHT = np.radians(np.linspace(90.0, 270.0, 7))


def _draw_head(img, mask, fig: Figure, label: int, outline: float) -> None:
    b, px = fig.body, fig.px
    c = fig.project(b.points["head"])
    cx, cy = float(c[0]), float(c[1])
    lat, down, fwd = b.head_axes
    d2 = fig.project_vec(down)
    n = float(np.hypot(*d2)) / px
    rx, ry = b.head_radii
    rx_px = max(3.0, rx * px)
    along = max(rx_px, (rx + (ry - rx) * min(1.0, n)) * px)
    angle = math.atan2(d2[1], d2[0]) if n > 1e-6 else math.pi / 2
    o = outline / 2
    outer = ellipse_points(cx, cy, along + o, rx_px + o, angle)
    _fill(mask, outer, label)
    if img is None:
        return
    _fill(img, outer, _shade(fig.palette.hair, 0.55), True)
    _fill(img, ellipse_points(cx, cy, along - o, rx_px - o, angle), fig.palette.hair)
    # the face: a skin ellipse on the side the head faces; hair is what is left
    fz = float(fwd[2])
    if fz > -0.35:
        f2 = fig.project_vec(fwd) / px      # length = sine of the angle away from the viewer
        dn = d2 / px
        fl = float(np.hypot(*f2))
        squash = 0.45 + 0.55 * max(0.0, fz)
        fc = c + (0.42 * f2 + 0.14 * dn) * rx_px
        ang = math.atan2(f2[1], f2[0]) if fl > 1e-3 else 0.0
        _fill(img, ellipse_points(float(fc[0]), float(fc[1]), 0.78 * rx_px * (squash if fl > 1e-3 else 1.0),
                                  0.78 * rx_px, ang), fig.palette.skin)
    # face marks on the visible side
    J = B.JOINT_INDEX
    vis = b.face_visible
    xy = fig.joints
    for name in ("left_ear", "right_ear"):
        if vis[J[name]]:
            p = xy[J[name]]
            _fill(img, ellipse_points(float(p[0]), float(p[1]), max(1.0, 0.3 * rx_px), max(1.0, 0.18 * rx_px),
                                      angle), _shade(fig.palette.skin, 0.72))
    eye_r = max(0.9, 0.11 * rx_px)
    for name in ("left_eye", "right_eye"):
        if vis[J[name]]:
            p = xy[J[name]]
            _fill(img, ellipse_points(float(p[0]), float(p[1]), eye_r, eye_r, 0.0), (25, 25, 25))
    if vis[J["nose"]]:
        p = xy[J["nose"]]
        _fill(img, ellipse_points(float(p[0]), float(p[1]), max(0.9, 0.13 * rx_px), max(0.9, 0.1 * rx_px), angle),
              _shade(fig.palette.skin, 0.5))


def _outline(fig: Figure) -> float:
    """Width in pixels of the dark outline around every body part."""
    return max(1.0, 0.0045 * fig.px)


def _draw_part(img, mask, fig: Figure, kind: str, geo, label: int, light: tuple) -> None:
    """One body part into the label mask and (unless img is None) shaded into the image."""
    outline = _outline(fig)
    o = outline / 2
    if kind == "limb":
        ax, ay, bx, by, ra, rb, colour = geo
        outer, inner = capsule_points(ax, ay, bx, by, ra + o, rb + o, inset=outline)
        _fill(mask, outer, label)
        if img is None:
            return
        _fill(img, outer, _dark(colour), True)
        _fill(img, inner, colour)
        dx, dy = bx - ax, by - ay
        n = math.hypot(dx, dy)
        if n > 1e-6 and ra > 3:   # a highlight stripe on the side facing the light
            nx, ny = -dy / n, dx / n
            if nx * light[0] + ny * light[1] < 0:
                nx, ny = -nx, -ny
            quad = [(ax + nx * ra * 0.2, ay + ny * ra * 0.2), (bx + nx * rb * 0.2, by + ny * rb * 0.2),
                    (bx + nx * rb * 0.65, by + ny * rb * 0.65), (ax + nx * ra * 0.65, ay + ny * ra * 0.65)]
            _fill(img, np.array([(int((x - 0.5) * ONE), int((y - 0.5) * ONE)) for x, y in quad], np.int32),
                  _light(colour))
    elif kind == "poly":
        hull, colour = geo
        cen = hull.mean(0)
        rad = float(np.abs(hull - cen).mean()) + 1e-6
        outer = _fix(cen + (hull - cen) * (1 + o / rad))
        _fill(mask, outer, label)
        if img is None:
            return
        _fill(img, outer, _dark(colour), True)
        _fill(img, _fix(cen + (hull - cen) * (1 - o / rad)), colour)
        shine = cen + (hull - cen) * 0.45 + np.array(light) * rad * 0.25
        _fill(img, _fix(shine), _lift(colour, 0.15))
    else:
        _draw_head(img, mask, fig, label, outline)


def draw_figure(img: np.ndarray, mask: np.ndarray, fig: Figure, person: int, light: tuple) -> list:
    """Draw one person (k-th in draw order) into the image and the label mask, far parts
    first; returns (and keeps in `fig.parts`) the parts in draw order."""
    base = 1 + LABELS_PER_PERSON * person
    if fig.seat:
        _draw_seat(img, mask, fig)
    parts = plan_parts(fig)
    for _, part, kind, geo in parts:
        _draw_part(img, mask, fig, kind, geo, base + part, light)
    fig.parts = parts
    return parts


def part_mask(fig: Figure, part: int, shape: tuple[int, int]) -> np.ndarray:
    """Boolean map of one body part drawn alone (ignoring everything drawn over it)."""
    if not fig.parts:
        fig.parts = plan_parts(fig)
    mask = np.zeros(shape, np.uint8)
    for _, p, kind, geo in fig.parts:
        if p == part:
            _draw_part(None, mask, fig, kind, geo, 1, (1.0, 0.0))
    return mask > 0


def _draw_seat(img, mask, fig: Figure) -> None:
    """A stool under a sitting person, drawn before (behind) the person. In the mask it is
    an object: it hides whoever was drawn before it."""
    J = B.JOINT_INDEX
    hips = (fig.joints[J["left_hip"]] + fig.joints[J["right_hip"]]) / 2
    knees = (fig.joints[J["left_knee"]] + fig.joints[J["right_knee"]]) / 2
    ankles = (fig.joints[J["left_ankle"]] + fig.joints[J["right_ankle"]]) / 2
    down = fig.project_vec(np.array([0.0, 1.0, 0.0]))
    down = down / max(1e-6, float(np.hypot(*down)))
    across = np.array([-down[1], down[0]])
    top = (hips + knees) / 2 + down * 0.04 * fig.px
    height = float(max(0.1 * fig.px, (ankles - top) @ down))
    half = max(0.1 * fig.px, abs(float((knees - hips) @ across)) * 0.65)
    quad = np.array([top - across * half, top + across * half,
                     top + across * half + down * height, top - across * half + down * height])
    colour = _hsv(fig.yaw_deg * 3 + 30, 0.35, 0.45)
    _poly(mask, quad, OBJECT_LABEL, False)
    _poly(img, quad, colour, True)
    cv2.polylines(img, [_fix(quad)], True, _shade(colour, 0.5), 2, cv2.LINE_AA, SHIFT)


# ------------------------------------------------------------------ background
_NOISE_BANKS: dict = {}


def _noise_bank(height: int, width: int):
    """Fixed per-pixel camera noise (seeded, the same in every process), cut at random
    offsets: much cheaper than drawing fresh Gaussian noise for every image. Frames over
    1024 px repeat a 1088 px tile (invisible at this noise level)."""
    key = (height, width)
    if key not in _NOISE_BANKS:
        g = np.random.default_rng(0x5EED)
        th, tw = min(height, 1024) + 64, min(width, 1024) + 64
        n = g.standard_normal((th, tw, 3), dtype=np.float32) * 4.0
        bank = []
        for a in (n, -n):
            a = np.clip(a, 0, 255).astype(np.uint8)
            if th < height + 64 or tw < width + 64:
                a = np.tile(a, (-(-(height + 64) // th), -(-(width + 64) // tw), 1))[:height + 64, :width + 64]
            bank.append(a)
        _NOISE_BANKS.clear()
        _NOISE_BANKS[key] = tuple(bank)
    return _NOISE_BANKS[key]


def _random_colour(d, vlo=0.15, vhi=0.95):
    return _hsv(d.uniform(0, 360), d.uniform(0.05, 0.8), d.uniform(vlo, vhi))


def draw_background(d, width: int, height: int) -> tuple[np.ndarray, str]:
    """Gradient + soft blotches (+ a texture) (+ a floor), then clutter shapes.

    The smooth layers are computed at 1/8 resolution and resized once. `d`: a Draws.
    """
    lw, lh = max(8, width // 8), max(8, height // 8)
    xx = (np.arange(lw, dtype=np.float32) / lh)[None, :]      # aspect-true units of height
    yy = (np.arange(lh, dtype=np.float32) / lh)[:, None]
    th = d.uniform(0, 2 * math.pi)
    t = xx * math.cos(th) + yy * math.sin(th)
    t -= t.min()
    t /= max(1e-6, float(t.max()))
    c0 = np.array(_random_colour(d), np.float32)
    c1 = np.array(_random_colour(d), np.float32)
    low = c0 + t[..., None] * (c1 - c0)
    # blotches: mostly brightness, a little colour
    g = max(2, int(d.uniform(3, 10)))
    blot = d.rng.standard_normal((g + 1, int(g * lw / lh) + 2, 4)).astype(np.float32)
    blot = cv2.resize(blot, (lw, lh), interpolation=cv2.INTER_LINEAR)
    low += blot[..., :1] * d.uniform(8, 35) + blot[..., 1:] * d.uniform(0, 12)
    kind = "gradient"
    r = d.random()
    if r < 0.25:
        kind = "stripes"
        period = d.uniform(0.07, 0.25)
        phi = d.uniform(0, math.pi)
        wave = np.sin((xx * math.cos(phi) + yy * math.sin(phi)) * (2 * math.pi / period))
        tint = np.array(_random_colour(d), np.float32) / 255.0 - 0.5
        low += wave[..., None] * (d.uniform(10, 40) * (1 + tint))
    elif r < 0.45:
        kind = "checker"
        q = d.uniform(0.07, 0.25)
        chk = (np.floor(xx / q) + np.floor(yy / q)) % 2
        low += (chk[..., None] - 0.5) * d.uniform(15, 50)
    elif r < 0.6:
        kind = "waves"
        q, w, a = d.uniform(0.07, 0.15), d.uniform(0.15, 0.5), d.uniform(0.02, 0.1)
        wave = np.sin((xx + a * np.sin(yy * (2 * math.pi / w))) * (2 * math.pi / q))
        low += wave[..., None] * d.uniform(8, 30)
    if d.random() < 0.4:   # a floor: the lower part of the frame in another colour
        kind += "+floor"
        fy = d.uniform(0.45, 0.85)
        below = np.broadcast_to(yy > fy, (lh, lw))
        floor = np.array(_random_colour(d), np.float32) + (yy - fy)[..., None] * d.uniform(-60, 60)
        low[below] = (np.broadcast_to(floor, low.shape)[below] + (low[below] - low.mean((0, 1))) * 0.4)
    img = cv2.resize(np.clip(low, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    _draw_clutter(d, img)
    return img, kind


def _draw_clutter(d, img) -> None:
    """Shapes that are not people, some of them person-like (sticks in limb colours, discs)."""
    h, w = img.shape[:2]
    s = min(w, h)
    for _ in range(d.integers(4, 22)):
        kind = d.random()
        colour = _random_colour(d)
        cx, cy = d.uniform(-0.1, 1.1) * w, d.uniform(-0.1, 1.1) * h
        size = s * d.uniform(0.03, 0.35)
        if kind < 0.25:
            box = cv2.boxPoints(((cx, cy), (size, size * d.uniform(0.2, 2.0)), d.uniform(0, 180)))
            pts = _fix(box)
            if d.random() < 0.5:
                _fill(img, pts, _shade(colour, 0.5), True)
                pts = _fix(box.mean(0) + (box - box.mean(0)) * (1 - 3 / max(size, 6)))
            _fill(img, pts, colour, True)
        elif kind < 0.45:
            _fill(img, ellipse_points(cx, cy, size / 2, size / 2 * d.uniform(0.4, 1.0), d.uniform(0, math.pi)),
                  colour, True)
        elif kind < 0.7:   # limb-like sticks, in the same hue families as limbs
            ang = d.uniform(0, 2 * math.pi)
            bx, by = cx + math.cos(ang) * size, cy + math.sin(ang) * size
            hue = d.uniform(-25, 55) if d.random() < 0.5 else d.uniform(165, 265)
            col = _hsv(hue, d.uniform(0.4, 0.95), d.uniform(0.4, 0.95))
            r = max(1.5, size * d.uniform(0.06, 0.15))
            r2 = r * d.uniform(0.6, 1.0)
            _fill(img, capsule_points(cx, cy, bx, by, r, r2), _shade(col, 0.45), True)
            _fill(img, capsule_points(cx, cy, bx, by, r - 1, r2 - 1), col)
        elif kind < 0.85:
            pts = d.rng.uniform(-size, size, (d.integers(3, 7), 2)) + (cx, cy)
            hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)
            _fill(img, _fix(hull), colour, True)
        else:
            bx, by = cx + d.uniform(-2, 2) * size, cy + d.uniform(-2, 2) * size
            cv2.line(img, (int((cx - 0.5) * ONE), int((cy - 0.5) * ONE)), (int((bx - 0.5) * ONE), int((by - 0.5) * ONE)),
                     colour, d.integers(1, 4), cv2.LINE_AA, SHIFT)


def draw_occluder(d, img, mask, fig: Figure) -> str:
    """An object in front of a person, over one of its joints; label OBJECT_LABEL."""
    j = fig.joints[d.integers(NUM_JOINTS)]
    cx, cy = float(j[0]) + d.uniform(-0.08, 0.08) * fig.px, float(j[1]) + d.uniform(-0.08, 0.08) * fig.px
    size = fig.px * d.uniform(0.12, 0.4)
    colour = _random_colour(d, 0.2, 0.9)
    r = d.random()
    if r < 0.45:
        kind = "box"
        box = cv2.boxPoints(((cx, cy), (size, size * d.uniform(0.5, 1.5)), d.uniform(-20, 20))).astype(np.float64)
        outer = _fix(box)
        _fill(mask, outer, OBJECT_LABEL)
        _fill(img, outer, _shade(colour, 0.4), True)
        cen = box.mean(0)
        _fill(img, _fix(cen + (box - cen) * (1 - 4 / max(size, 8))), colour)
        _fill(img, _fix(cen + (box - cen) * 0.7), _lift(colour, 0.12))
    elif r < 0.7:
        kind = "pole"
        ang = math.radians(d.uniform(-15, 15))
        dx, dy = math.sin(ang) * size * 3, math.cos(ang) * size * 3
        rad = max(2.0, size * d.uniform(0.08, 0.2))
        outer = capsule_points(cx - dx, cy - dy, cx + dx, cy + dy, rad, rad)
        _fill(mask, outer, OBJECT_LABEL)
        _fill(img, outer, _shade(colour, 0.5), True)
        _fill(img, capsule_points(cx - dx, cy - dy, cx + dx, cy + dy, rad * 0.75, rad * 0.75), colour)
    else:
        kind = "ball"
        a, b = size / 2, size / 2 * d.uniform(0.7, 1.0)
        ang = d.uniform(0, math.pi)
        outer = ellipse_points(cx, cy, a, b, ang)
        _fill(mask, outer, OBJECT_LABEL)
        _fill(img, outer, _shade(colour, 0.6), True)
        _fill(img, ellipse_points(cx - 0.15 * a, cy - 0.15 * b, a * 0.75, b * 0.75, ang), colour)
    return kind


def camera_noise(d, img: np.ndarray) -> str:
    """Optional slight blur, then sensor noise (0, 1 or 2 layers of the fixed noise bank)."""
    h, w = img.shape[:2]
    desc = []
    if d.random() < 0.15:
        cv2.boxFilter(img, -1, (3, 3), dst=img)
        desc.append("blur")
    amount = d.choice(3, p=(0.2, 0.5, 0.3))
    if amount:
        pos, neg = _noise_bank(h, w)
        oy, ox = d.integers(64), d.integers(64)
        for _ in range(amount):
            cv2.add(img, pos[oy:oy + h, ox:ox + w], dst=img)
            cv2.subtract(img, neg[oy:oy + h, ox:ox + w], dst=img)
            oy, ox = 63 - oy, 63 - ox
        desc.append(f"noise{amount}")
    return "+".join(desc) or "clean"
