"""Small shared utilities (images, seeding, I/O)."""
