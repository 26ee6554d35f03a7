"""The stages of a movie, each a typed function a graph node calls: write, cast, plan keyframes,
draw keyframes, render shots, assemble."""
