"""Telling characters apart in pictures: the identity encoder, the identity check, the looks
reader and the character segmenter."""
