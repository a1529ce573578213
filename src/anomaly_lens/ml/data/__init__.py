"""Reading, checking, pairing and splitting images; the image cache and its datasets."""
