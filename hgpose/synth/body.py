"""The synthetic person: a 3-D kinematic tree on the COCO-17 skeleton, posed and projected.

A body is built in a world frame with x to the image's right, y down and z toward the
viewer (orthographic camera). The person is first posed facing the camera, then turned
about the vertical axis by `yaw_deg` (0 = facing the camera, +90 = facing the image's right
edge), projected (drop z, keep it as depth), rotated in the image plane by `rotation_deg`
(positive = counter-clockwise on screen), scaled and placed.

Lengths are in units of the person's standing height (head top to sole = 1). Angles of
the limbs are set in the turned body frame but relative to the vertical, so that arms of a
bending person still hang down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hgpose.skeleton import JOINT_INDEX, NUM_JOINTS

POSTURES = ("standing", "walking", "sitting", "arms_raised", "bending")
FACINGS = ("front", "right", "back", "left")  # yaw bins centred on 0, 90, 180, -90 degrees

# ------------------------------------------------------------------ proportions (height = 1)
HEAD_RY, HEAD_RX = 0.066, 0.056      # head half-height and half-width
NECK_LEN = 0.035                     # neck base (between shoulders) -> bottom of the head
TORSO_LEN = 0.29                     # pelvis centre -> neck base
SHOULDER_X, HIP_X = 0.105, 0.075     # joint offsets from the mid-line
TORSO_TOP = (0.125, 0.065)           # half-width, half-depth of the shoulder-level section
TORSO_BOTTOM = (0.10, 0.065)         # half-width, half-depth of the hip-level section
TORSO_BOTTOM_DROP = 0.035            # hip-level section lies this far below the hip joints
UPPER_ARM, LOWER_ARM, HAND = 0.17, 0.15, 0.075
THIGH, SHIN, FOOT = 0.245, 0.235, 0.10
# radii (half-widths) of the limb capsules at their (start, end)
R_UPPER_ARM, R_LOWER_ARM, R_HAND = (0.030, 0.025), (0.024, 0.019), 0.022
R_THIGH, R_SHIN, R_FOOT = (0.045, 0.035), (0.034, 0.025), 0.022
R_NECK = 0.026

# ------------------------------------------------------------------ body parts
PARTS = (
    "head", "neck", "torso_left", "torso_right",
    "upper_arm_left", "lower_arm_left", "hand_left",
    "upper_arm_right", "lower_arm_right", "hand_right",
    "thigh_left", "shin_left", "foot_left",
    "thigh_right", "shin_right", "foot_right",
)
PART_INDEX = {name: i for i, name in enumerate(PARTS)}
NUM_PARTS = len(PARTS)


def _joint_parts() -> tuple[tuple[int, ...], ...]:
    """For each COCO joint, the body parts its keypoint sits on (any of them counts)."""
    table = {
        "nose": ("head",), "left_eye": ("head",), "right_eye": ("head",),
        "left_ear": ("head",), "right_ear": ("head",),
    }
    for side in ("left", "right"):
        table[f"{side}_shoulder"] = (f"torso_{side}", f"upper_arm_{side}")
        table[f"{side}_elbow"] = (f"upper_arm_{side}", f"lower_arm_{side}")
        table[f"{side}_wrist"] = (f"lower_arm_{side}", f"hand_{side}")
        table[f"{side}_hip"] = (f"torso_{side}", f"thigh_{side}")
        table[f"{side}_knee"] = (f"thigh_{side}", f"shin_{side}")
        table[f"{side}_ankle"] = (f"shin_{side}", f"foot_{side}")
    from hgpose.skeleton import JOINTS

    return tuple(tuple(PART_INDEX[p] for p in table[name]) for name in JOINTS)


JOINT_PARTS = _joint_parts()
FACE_JOINTS = tuple(JOINT_INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"))


# ------------------------------------------------------------------ pose parameters
@dataclass
class Pose:
    """Joint angles in degrees. Arms/legs: (flexion, abduction, bend, twist) per side.

    flexion: swing forward from hanging (180 = straight up in front); abduction: swing
    out to the side (180 = straight up over the side); bend: elbow/knee flexion;
    twist: turns the elbow's bending plane toward the body mid-line.
    """

    posture: str
    lean: float = 0.0          # forward bend of the torso at the hips
    side_lean: float = 0.0     # torso tilt toward the person's left
    head_yaw: float = 0.0      # head turned relative to the body (positive: toward the person's left)
    head_pitch: float = 0.0    # head nodding down
    arms: dict = field(default_factory=dict)   # side -> (flex, abd, bend, twist)
    legs: dict = field(default_factory=dict)   # side -> (flex, abd, bend)


def _u(rng, lo, hi):
    return rng.uniform(lo, hi)


def _clip(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def _hanging_arm(rng):
    return (_u(rng, -15, 25), _u(rng, 4, 28), _u(rng, 0, 50), _u(rng, -20, 40))


def _standing_legs(rng):
    legs = {}
    for side in ("left", "right"):
        legs[side] = (_u(rng, -6, 8), _u(rng, 0, 12), _u(rng, 0, 12))
    return legs


def sample_pose(rng, posture: str) -> Pose:
    """A pose of the named family, with continuous variation inside it."""
    pose = Pose(posture, head_yaw=_clip(rng.normal(0, 15), -35, 35),
                head_pitch=_clip(rng.normal(0, 8), -20, 25),
                side_lean=_clip(rng.normal(0, 3), -8, 8))
    if posture == "standing":
        pose.lean = _u(rng, -4, 8)
        pose.legs = _standing_legs(rng)
        style = rng.uniform()
        for side in ("left", "right"):
            if style < 0.6:
                pose.arms[side] = _hanging_arm(rng)
            elif style < 0.8:   # hands on hips
                pose.arms[side] = (_u(rng, -25, 0), _u(rng, 35, 60), _u(rng, 85, 125), _u(rng, 70, 100))
            else:               # arms folded / held in front
                pose.arms[side] = (_u(rng, 10, 45), _u(rng, 0, 20), _u(rng, 80, 120), _u(rng, 40, 80))
    elif posture == "walking":
        phase, amp = _u(rng, 0, 2 * math.pi), _u(rng, 15, 35)
        swing = math.sin(phase)
        pose.lean = _u(rng, 0, 10)
        for side, sign in (("left", 1.0), ("right", -1.0)):
            flex = sign * amp * swing
            bend = 5 + max(0.0, -flex) * 1.3 + _u(rng, 0, 12)
            pose.legs[side] = (flex, _u(rng, 0, 8), bend)
            pose.arms[side] = (-0.9 * flex + _u(rng, -5, 5), _u(rng, 4, 16), _u(rng, 10, 50), _u(rng, -10, 30))
    elif posture == "sitting":
        pose.lean = _u(rng, -12, 18)
        for side in ("left", "right"):
            flex = _u(rng, 70, 100)
            pose.legs[side] = (flex, _u(rng, 0, 22), flex + _u(rng, -20, 15))
        lap = rng.uniform() < 0.6
        for side in ("left", "right"):
            if lap:   # hands resting on the thighs / lap
                pose.arms[side] = (_u(rng, 5, 40), _u(rng, 0, 20), _u(rng, 40, 90), _u(rng, 0, 50))
            else:
                pose.arms[side] = _hanging_arm(rng)
    elif posture == "arms_raised":
        pose.lean = _u(rng, -8, 5)
        pose.legs = _standing_legs(rng)
        which = rng.integers(3)  # 0 both, 1 left only, 2 right only
        for i, side in enumerate(("left", "right")):
            if which == 0 or which == i + 1:
                if rng.uniform() < 0.5:   # raised sideways
                    pose.arms[side] = (_u(rng, -20, 30), _u(rng, 100, 172), _u(rng, 0, 60), _u(rng, -30, 30))
                else:                     # raised in front / overhead
                    pose.arms[side] = (_u(rng, 120, 178), _u(rng, 0, 30), _u(rng, 0, 60), _u(rng, -30, 30))
            else:
                pose.arms[side] = _hanging_arm(rng)
        pose.head_pitch = _clip(pose.head_pitch - 8, -25, 25)
    elif posture == "bending":
        pose.lean = _u(rng, 35, 95)
        for side in ("left", "right"):
            bend = _u(rng, 0, 40)
            pose.legs[side] = (bend * 0.5 + _u(rng, -8, 8), _u(rng, 0, 12), bend)
            pose.arms[side] = (_u(rng, -10, 40), _u(rng, 0, 20), _u(rng, 0, 45), _u(rng, -20, 30))
        pose.head_pitch = _clip(pose.head_pitch - 0.3 * pose.lean, -35, 25)
    else:
        raise ValueError(f"unknown posture {posture!r}; choose one of {', '.join(POSTURES)}")
    return pose


@dataclass
class Build:
    """Per-person proportions: multipliers of the mean lengths and widths."""

    limbs: float = 1.0
    torso: float = 1.0
    head: float = 1.0
    width: float = 1.0


def sample_build(rng) -> Build:
    return Build(limbs=_u(rng, 0.93, 1.07), torso=_u(rng, 0.93, 1.07),
                 head=_u(rng, 0.9, 1.1), width=_u(rng, 0.85, 1.25))


# ------------------------------------------------------------------ geometry
def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about a unit axis (right-handed, radians)."""
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    C = 1 - c
    return np.array([
        [c + x * x * C, x * y * C - z * s, x * z * C + y * s],
        [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
        [z * x * C - y * s, z * y * C + x * s, c + z * z * C],
    ])


def _unit(v: np.ndarray) -> np.ndarray:
    n = math.sqrt(float(v @ v))
    return v / n if n > 1e-9 else v


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.cross for two 3-vectors, without its per-call overhead."""
    a0, a1, a2 = a.tolist()
    b0, b1, b2 = b.tolist()
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _limb_dir(flex: float, abd: float, lateral: float) -> np.ndarray:
    """Direction of a limb that hangs straight down at (0, 0), in the unturned body frame.

    lateral: +1 for the person's left (+x when facing the camera), -1 for the right.
    """
    f, a = math.radians(flex), math.radians(abd)
    return _unit(np.array([lateral * math.sin(a), math.cos(a) * math.cos(f), math.cos(a) * math.sin(f)]))


def _bent(upper: np.ndarray, bend: float, ref: np.ndarray, twist: float, lateral: float) -> np.ndarray:
    """Direction of the lower segment: `upper` turned by `bend` degrees toward `ref`
    (made perpendicular to `upper`), the bending plane twisted toward the mid-line."""
    p = _unit(ref - float(ref @ upper) * upper)
    if twist:
        medial = -lateral * _cross(upper, p)
        t = math.radians(twist)
        p = math.cos(t) * p + math.sin(t) * medial
    b = math.radians(bend)
    return _unit(math.cos(b) * upper + math.sin(b) * p)


@dataclass
class Body3D:
    """Posed 3-D points in the camera frame (x right, y down, z toward the viewer)."""

    joints: np.ndarray          # [17,3]
    face_visible: np.ndarray    # [17] bool: False for face points on the far side of the head
    points: dict                # named extra points: pelvis, neck_base, head, hand_*, foot_*
    head_axes: np.ndarray       # [3,3] rows: head lateral (person's left), down, forward
    torso_sections: tuple       # ((centre, lateral_vec, forward_vec) at shoulders, at hips)
    limb_radius: dict           # part -> (r_start, r_end) in body units
    head_radii: tuple           # (rx, ry) in body units


def pose_body(pose: Pose, build: Build, yaw_deg: float) -> Body3D:
    """Forward kinematics: joint angles + proportions + facing -> 3-D camera-frame points."""
    spine, lateral, forward = _torso_axes(pose)
    pelvis = np.zeros(3)
    neck_base = pelvis + spine * TORSO_LEN * build.torso
    w = build.width
    j = np.zeros((NUM_JOINTS, 3))
    J = JOINT_INDEX
    for name, sgn in (("left", 1.0), ("right", -1.0)):
        j[J[f"{name}_shoulder"]] = neck_base + sgn * SHOULDER_X * w * lateral - 0.018 * spine
        j[J[f"{name}_hip"]] = pelvis + sgn * HIP_X * w * lateral
    points = {"pelvis": pelvis, "neck_base": neck_base}
    for name, sgn in (("left", 1.0), ("right", -1.0)):
        _pose_limbs(pose, build.limbs, name, sgn, j, points)
    head_c, (head_lat, head_down, head_fwd), face = _pose_head(pose, build.head, spine, lateral, forward, neck_base)
    points["head"] = head_c
    r = HEAD_RX * build.head
    for name, off in face.items():
        j[J[name]] = head_c + off * r
    torso_sections = (
        (neck_base, TORSO_TOP[0] * w * lateral, TORSO_TOP[1] * forward),
        (pelvis - TORSO_BOTTOM_DROP * spine, TORSO_BOTTOM[0] * w * lateral, TORSO_BOTTOM[1] * forward),
    )
    radii = {
        "upper_arm": tuple(v * w for v in R_UPPER_ARM), "lower_arm": tuple(v * w for v in R_LOWER_ARM),
        "hand": (R_HAND * w, R_HAND * w * 0.9), "thigh": tuple(v * w for v in R_THIGH),
        "shin": tuple(v * w for v in R_SHIN), "foot": (R_FOOT * w, R_FOOT * w * 0.9),
        "neck": (R_NECK * w, R_NECK * w),
    }

    # turn the whole body about the vertical axis: +yaw turns the face toward image right
    yaw = math.radians(yaw_deg)
    R = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    j = j @ R.T
    points = {k: R @ v for k, v in points.items()}
    torso_sections = tuple(tuple(R @ v for v in sec) for sec in torso_sections)
    head_axes = np.stack([R @ head_lat, R @ head_down, R @ head_fwd])
    h = build.head
    return Body3D(j, _face_visible(face, R), points, head_axes, torso_sections, radii, (HEAD_RX * h, HEAD_RY * h))


def _torso_axes(pose: Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spine, lateral, forward) unit vectors of the leaning torso, in the body frame before
    the turn: X = person's left, Y = down, Z = forward (toward the camera)."""
    lean, side = math.radians(pose.lean), math.radians(pose.side_lean)
    spine = _unit(np.array([math.sin(side), -math.cos(lean) * math.cos(side), math.sin(lean)]))
    lateral = _unit(np.array([1.0, 0, 0]) - spine[0] * spine)
    return spine, lateral, _cross(spine, lateral)


def _pose_limbs(pose: Pose, L: float, name: str, sgn: float, j: np.ndarray, points: dict) -> None:
    """One side's arm and leg from its shoulder and hip (already in `j`): elbow, wrist,
    knee, ankle into `j`, hand and foot into `points`."""
    J = JOINT_INDEX
    flex, abd, bend, twist = pose.arms[name]
    ua = _limb_dir(flex, abd, sgn)
    fr = math.radians(flex)
    # elbows bend the forearm toward the front (a hanging arm's hand comes forward/up)
    la = _bent(ua, bend, np.array([0.0, -math.sin(fr), math.cos(fr)]), twist, sgn)
    elbow = j[J[f"{name}_shoulder"]] + ua * UPPER_ARM * L
    wrist = elbow + la * LOWER_ARM * L
    j[J[f"{name}_elbow"]], j[J[f"{name}_wrist"]] = elbow, wrist
    points[f"hand_{name}"] = wrist + la * HAND * L
    flex, abd, bend = pose.legs[name]
    th = _limb_dir(flex, abd, sgn)
    fr = math.radians(flex)
    # knees bend the shin backward (sitting: downward)
    sh = _bent(th, bend, np.array([0.0, math.sin(fr), -math.cos(fr)]), 0.0, sgn)
    knee = j[J[f"{name}_hip"]] + th * THIGH * L
    ankle = knee + sh * SHIN * L
    j[J[f"{name}_knee"]], j[J[f"{name}_ankle"]] = knee, ankle
    toe = _unit(np.array([0.0, 0.25, 1.0]) + 0.3 * sh)  # forward, a little down
    points[f"foot_{name}"] = ankle + toe * FOOT * L


def _pose_head(pose: Pose, h: float, spine, lateral, forward, neck_base):
    """The head on a short neck continuing the spine, nodded and turned: its centre, its
    axes (lateral, down, forward) and the face points' offsets from the centre (in head
    radii)."""
    nod = _rot(lateral, -math.radians(pose.head_pitch))  # positive pitch: face turns down
    head_down, head_fwd = nod @ (-spine), nod @ forward
    turn = _rot(head_down, math.radians(pose.head_yaw))  # positive yaw: toward the person's left
    head_lat, head_fwd = turn @ lateral, turn @ head_fwd
    head_c = neck_base - head_down * (NECK_LEN + HEAD_RY * h)
    face = {
        "nose": 0.82 * head_fwd + 0.15 * head_down,
        "left_eye": 0.62 * head_fwd + 0.40 * head_lat - 0.12 * head_down,
        "right_eye": 0.62 * head_fwd - 0.40 * head_lat - 0.12 * head_down,
        "left_ear": 0.86 * head_lat - 0.08 * head_fwd,
        "right_ear": -0.86 * head_lat - 0.08 * head_fwd,
    }
    return head_c, (head_lat, head_down, head_fwd), face


def _face_visible(face: dict, R: np.ndarray) -> np.ndarray:
    """bool [17]: a face point is seen when its surface normal does not point away from the
    viewer (the body's other joints always count as visible here)."""
    vis = np.ones(NUM_JOINTS, bool)
    for name, off in face.items():
        normal = _unit(R @ off)
        limit = -0.35 if name.endswith("ear") else -0.12 if name == "nose" else -0.05
        vis[JOINT_INDEX[name]] = normal[2] >= limit
    return vis


def facing_of(yaw_deg: float) -> str:
    """Name of the yaw bin: front (|yaw| < 45), right (45..135), back, left (-135..-45)."""
    y = (yaw_deg + 180.0) % 360.0 - 180.0
    if -45 <= y < 45:
        return "front"
    if 45 <= y < 135:
        return "right"
    if -135 <= y < -45:
        return "left"
    return "back"


def sample_yaw(rng) -> float:
    """Body turn in degrees, [-180, 180): front-facing most often, as in photographs."""
    centre = rng.choice((0.0, 90.0, 180.0, -90.0), p=(0.45, 0.2, 0.15, 0.2))
    y = centre + rng.uniform(-40, 40)
    return (y + 180.0) % 360.0 - 180.0
