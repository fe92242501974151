"""Data: the object library (and, later, grasps, images and datasets)."""
