"""Batches of similar lengths for variable-length training: each padded only to its own longest.

A variable-length split is padded to its longest sequence, and a recurrent layer runs every
step of a batch, masked or not. Sorting the sequences by length into batches, and cutting each
batch to its own longest sequence, skips most of the padding. The batches are shuffled (their
order and, through a random tie-break, their members) every epoch.
"""

from __future__ import annotations

import keras
import numpy as np

from zoo.tasks.base import real_steps


class LengthBatches(keras.utils.PyDataset):
    """`(x, y[, w])` in batches of sequences of similar length, each cut to its own longest.

    Per-step targets and weights are cut with their inputs. `seed` fixes the shuffling.
    """

    def __init__(self, x, y, w=None, *, batch_size: int = 32, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.w, self.batch_size = x, y, w, batch_size
        self.lengths = real_steps(x).sum(axis=1)  # steps before the NaN padding
        self.per_step = y.ndim >= 2 and y.shape[1] == x.shape[1]
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self):
        order = np.lexsort((self.rng.random(len(self.x)), self.lengths))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        self.batches = [batches[i] for i in self.rng.permutation(len(batches))]

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        rows = np.sort(self.batches[index])
        steps = int(self.lengths[rows].max())
        cut = (rows, slice(0, steps)) if self.per_step else rows
        batch = (self.x[rows, :steps], self.y[cut])
        return batch if self.w is None else (*batch, self.w[cut])
