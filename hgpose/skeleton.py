"""The COCO-17 keypoint skeleton: joint names, left/right pairs, limbs.

Every stage (crop rule, codecs, augmentation, metrics, drawing) uses these tables, so
they live in one place.
"""

JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_JOINTS = len(JOINTS)
JOINT_INDEX = {name: i for i, name in enumerate(JOINTS)}

# Index of each joint's mirror image: a horizontal flip swaps left and right.
FLIP_INDEX = tuple(
    JOINT_INDEX[n.replace("left_", "right_")] if n.startswith("left_")
    else JOINT_INDEX[n.replace("right_", "left_")] if n.startswith("right_")
    else JOINT_INDEX[n]
    for n in JOINTS
)

# The thesis's "limbs" subset for PCK: wrists, elbows, knees, ankles.
LIMB_JOINTS = tuple(
    JOINT_INDEX[n] for n in JOINTS
    if n.split("_")[-1] in ("wrist", "elbow", "knee", "ankle")
)

# Bones to draw, as COCO's `skeleton` field (0-based here).
BONES = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
    (3, 5), (4, 6),
)

# COCO OKS per-joint sigmas (pycocotools' defaults), used by synthetic checks and drawing.
OKS_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)


def side_of(joint: int) -> str:
    """'left', 'right' or 'centre' — used to colour skeleton drawings per side."""
    name = JOINTS[joint]
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"
