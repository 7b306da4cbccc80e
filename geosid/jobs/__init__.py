"""Spark jobs: pure DataFrame transforms, thin run() functions, engine and lake I/O."""
