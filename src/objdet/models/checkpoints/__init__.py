"""TF2 checkpoints without TensorFlow: the tensor-bundle reader and the variable maps that
put the OD API's variables into objdet modules."""
