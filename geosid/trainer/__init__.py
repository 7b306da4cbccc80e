"""Downstream of the corpus, engine-free (delta-rs reads, torch trains): the pinned snapshot
reader, the OneLoc model, beam search and baselines, rewards, and the training steps
(`loading`, `training`, `evaluation`, `pairs`, `dpo`) with their run records (`runs`)."""
