"""Comparison runs: cloud (Rekognition) or edge (the camera's model), measured on a festival's own
crowd. services writes, selectors reads, charts draws the page; docs/comparison.md."""
