"""Script writers: everything that turns a brief into a Screenplay."""
