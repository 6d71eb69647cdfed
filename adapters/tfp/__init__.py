"""TensorFlow Probability adapters (optional extra ``uqbench[tfp]``), twins of the torch ones.

``tfp-bbb``, ``tfp-flipout``, ``tfp-lrt`` (:mod:`.variational`), ``tfp-mc-dropout``
(:mod:`.mc_dropout`) and ``tfp-vae`` (:mod:`.vae`); shared machinery in :mod:`._common`.
Importing these modules does not import TensorFlow: it is imported on the first ``fit``.
"""
