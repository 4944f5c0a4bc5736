"""fastnn.torch with torch.distributed (docs/distributed.md).

DDP, FSDP2 (fully_shard) and tensor parallel on DTensor (ColwiseParallel, RowwiseParallel,
SequenceParallel) take fastnn.torch modules as they are: nothing to import. This module
adds what torch.distributed does not have:

- ``vocab_parallel_cross_entropy(x, weight, bias, target, ...)``: Linear + cross-entropy
  with the classes split over the ranks (a ColwiseParallel head), never forming the
  logits; see its docstring.
- ``VocabParallel()``: the parallelize_module style that shards such a head's weight and
  bias on the classes (fastnn.torch.LinearCrossEntropyLoss; ColwiseParallel takes only
  nn.Linear and nn.Embedding).
"""
from ._distributed import VocabParallel, vocab_parallel_cross_entropy

__all__ = ["VocabParallel", "vocab_parallel_cross_entropy"]
