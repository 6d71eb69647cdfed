"""In-tree uqbench adapters (import name ``uqbench_adapters``); one module per method family and backend."""
