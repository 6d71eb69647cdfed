"""TensorFlow Probability adapters (optional extra ``uqbench[tfp]``)."""
