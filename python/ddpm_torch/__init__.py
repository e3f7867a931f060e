"""ddpm_torch: ddpm-ts's U-Net, recipe and checkpoint format in PyTorch, to continue a run on many GPUs (DDP) and
hand it back. See README.md beside this file; train.py is the torchrun entry point."""
__all__ = ['checkpoint', 'data', 'diffusion', 'jsonjs', 'optim', 'rng', 'runlock', 'safetensors', 'unet']
