"""Import awscam before cv2: on a DeepLens, AWS's guidance is that importing OpenCV first breaks
awscam (both load native libraries, and the device image's awscam must win). Every DeepLens
entry point calls import_awscam() before it imports anything that imports cv2."""

from __future__ import annotations

import sys


def import_awscam():
    """awscam when this is a DeepLens, else None (DeepLensSource says what is missing)."""
    cv2_first = "cv2" in sys.modules and "awscam" not in sys.modules
    try:
        import awscam
    except ImportError:
        return None
    if cv2_first:
        import logging

        logging.getLogger("edge_package").warning(
            "cv2 was imported before awscam; on a DeepLens the camera may not work"
        )
    return awscam
