"""Downstream of the corpus: snapshot readers, the OneLoc model and its training jobs."""
