"""Assembly: shots and the movie as mp4, subtitles, and the storyboard."""
