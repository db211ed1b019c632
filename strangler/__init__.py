"""strangler: move a live monolith to new services one capability at a time."""
