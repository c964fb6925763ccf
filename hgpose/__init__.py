"""hgpose: Stacked Hourglass pose estimation on COCO, and tools to explain what it learned.

Pipeline, one stage per sub-package, data flowing one way:
    data/ -> codec -> models/ -> train/ -> evaluate/ -> explain/
"""

__version__ = "0.1.0"
