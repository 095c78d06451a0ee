"""The train room: the model job (model_job), the SAE job loop (sae_job), one trainer class per SAE
recipe (recipes/), the optimisers (optim)."""
