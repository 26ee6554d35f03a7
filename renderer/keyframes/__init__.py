"""Keyframes: the `Keyframer` interface, the built-in keyframe models and pipeline, and the
pretrained (diffusers text-to-image) keyframer."""
