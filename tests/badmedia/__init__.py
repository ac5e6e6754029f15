"""A synthesised corpus of bad (and a few good) media files for the media-rule tests."""
