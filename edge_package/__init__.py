"""StagePulse edge software: runs on the camera, never imports Django or any server module."""

# 0.2.0: the small-faces detector (budgeted tile schedule, held-face re-check, full resolution
# from 0.53), so a camera still on the old one is told apart in telemetry and rollouts.
__version__ = "0.2.0"
