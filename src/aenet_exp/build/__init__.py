"""The composition root: the Hydra app of every command (:mod:`aenet_exp.build.apps`) and the conversion of each
command's config into the typed objects the command takes. With :mod:`aenet_exp.config`, the only code that reads
a config; the commands below it take typed objects."""
