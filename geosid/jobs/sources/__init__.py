"""Raw sources: file formats, landing of raw lines, and their parse transforms."""
