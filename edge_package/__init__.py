"""StagePulse edge software: runs on the camera, never imports Django or any server module."""

__version__ = "0.1.0"
