"""The scoring core: grades answers with core_rs features and a model served by Triton."""
