"""An example uqbench plugin (see ``ridge.BayesianRidgeAdapter``)."""
