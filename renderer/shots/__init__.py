"""Shots: the `ShotRenderer` interface, the built-in motion model, its pipeline and renderer, and
the pretrained (diffusers image-to-video) shot renderer."""
