"""Manifest builders for the supported datasets; importing this package registers them."""

from mmkd.datasets import custom, epic100, ssv2  # noqa: F401  (registers the builders)
