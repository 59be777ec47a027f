"""Class names, palettes and normalisation of the datasets rtseg knows.

These are facts about datasets and about how public weights were trained; they
are the defaults a checkpoint's metadata is filled from, never read by the GUI
directly (the GUI reads the artifact's ModelMeta).
"""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# CoinCheung's BiSeNet Cityscapes weights were trained with these (RGB in [0, 1]).
COINCHEUNG_CITYSCAPES_MEAN = (0.3257, 0.3690, 0.3223)
COINCHEUNG_CITYSCAPES_STD = (0.2112, 0.2148, 0.2115)

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# CamVid 11-class version (SegNet convention); label 11 is "unlabelled" and ignored.
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol",
    "Fence", "Car", "Pedestrian", "Bicyclist",
)
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
    (0, 128, 192),
)
CAMVID_IGNORE_INDEX = 11

# PASCAL VOC 2012 (21 classes with background), the label set of torchvision's
# segmentation checkpoints (trained on a COCO subset mapped to these classes).
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
# The VOC development kit's colour map (bit-interleaved class index).
VOC_PALETTE = (
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
    (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0),
    (0, 192, 0), (128, 192, 0), (0, 64, 128),
)


def generic_classes(n: int) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Names and a distinct, deterministic palette for ``n`` unnamed classes.

    Used only when a model has a class count no known dataset has; the
    palette spreads hues with the golden ratio so neighbours differ.
    """
    import colorsys

    names = tuple(f"class {i}" for i in range(n))
    palette = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
        palette.append((int(r * 255), int(g * 255), int(b * 255)))
    return names, tuple(palette)


def default_classes(n: int) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Class names and palette for a model with ``n`` classes when nothing better is known."""
    if n == len(CITYSCAPES_CLASSES):
        return CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
    if n == len(CAMVID_CLASSES):
        return CAMVID_CLASSES, CAMVID_PALETTE
    if n == len(VOC_CLASSES):
        return VOC_CLASSES, VOC_PALETTE
    return generic_classes(n)
