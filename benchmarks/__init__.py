"""asv benchmarks (and script-mode speed checks) for uqbench."""
