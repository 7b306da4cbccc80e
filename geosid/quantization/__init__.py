"""Quantizers (k-means, residual k-means, ResKmeansFSQ, geo-prefix), SIDs and their metrics."""
