"""Small helpers shared by every layer (file I/O, batched inference, seeding, devices)."""
