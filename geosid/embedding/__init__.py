"""Item documents (content + location context) and the encoders that embed them."""
