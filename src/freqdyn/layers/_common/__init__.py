"""The floor the five families stand on (private): the Conv2d contract and its argument handling, the attention
trunk (hidden conv + norm + heads), the batched per-sample conv, program-mode queries (trace / export / compile /
torch.func), argument checks and FLOP records.
"""
