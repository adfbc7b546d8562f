"""Golden vector sets: $readmemh hex files plus a manifest."""
