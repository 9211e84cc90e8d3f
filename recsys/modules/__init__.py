"""Plain ``nn.Module``s that run on one CPU: embedding layouts, interactions, the CTR model."""
