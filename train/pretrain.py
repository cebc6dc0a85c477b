"""Pretraining entry point: `[torchrun ...] train/pretrain.py CONFIG [key=value ...]`.

What torchrun and slurm/pretrain.sh launch; `mmtok train` is the same thing. Example:

    torchrun --standalone --nproc_per_node=2 train/pretrain.py configs/tiny.yaml \\
        tokenizer=DIR data.train_shards=DIR train.max_steps=100 train.out_dir=runs/tiny
"""

import sys

from mmtok.cli.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
