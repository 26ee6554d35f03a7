"""The shared schema: the Screenplay, the conditioning vocabulary every model family reads, and
the looks casting gives characters."""
