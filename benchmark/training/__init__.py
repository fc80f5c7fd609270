"""Training: ``python -m benchmark.train``, in named parts.

- ``schedule``: optimisers, the learning-rate schedules (pure), the seeded epoch batches and their rank slices;
- ``step``: the training step (forward_train + the model's loss, DDP/compile wrapping, the non-finite guard,
  backward, optimiser step), which ``benchmark.tools.bench`` times;
- ``checkpoints``: ``last.pt`` / ``final.pt``, written atomically; ``resume``: whether and how a run continues;
- ``validation``: the held-out PSNR through the scoring loop evaluation uses;
- ``loop``: the run itself; ``distributed``: torchrun and SLURM ranks.
"""
