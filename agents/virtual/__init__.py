"""Procedural virtual scenes: seeded scene specs, a numpy renderer with exact masks, and the
captions and template questions that follow from the scene metadata."""
