"""Training: one explicit loop with small hooks, optimizer/schedule builders, checkpoint I/O."""
