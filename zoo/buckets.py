"""Training batches whose order is a function of the seed and the epoch alone.

A resumed run (`--resume`) starts again at epoch N in a new process: for it to train as the
uninterrupted run did, epoch N's batches must not depend on the epochs before (Keras' own
shuffle draws from a random state that a new process starts afresh). `EpochBatches` shuffles
the samples of each epoch from (seed, epoch); `LengthBatches` does the same for variable-length
training, where batches of similar lengths are each padded only to their own longest: a
recurrent layer runs every step of a batch, masked or not, so sorting the sequences by length
into batches skips most of the padding.
"""

from __future__ import annotations

import keras
import numpy as np

from zoo.tasks.base import real_steps


class EpochBatches(keras.utils.PyDataset):
    """`(x, y[, w])` in shuffled batches, epoch N's order drawn from (seed, N) alone.

    Args:
        x, y, w: the training split (`w`: sample weights, or None).
        batch_size: samples a batch (the last may be smaller). Defaults to `32`.
        seed: the shuffling's seed. Defaults to `0`.
        epoch: the first epoch `fit` will run (a resumed run's). Defaults to `0`.
    """

    def __init__(self, x, y, w=None, *, batch_size: int = 32, seed: int = 0, epoch: int = 0):
        super().__init__()
        self.x, self.y, self.w, self.batch_size = x, y, w, batch_size
        self.seed, self.epoch = seed, epoch
        self.order = self.shuffled()

    def shuffled(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def on_epoch_end(self):
        self.epoch += 1
        self.order = self.shuffled()

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = (self.x[rows], self.y[rows])
        return batch if self.w is None else (*batch, self.w[rows])


class LengthBatches(keras.utils.PyDataset):
    """`(x, y[, w])` in batches of sequences of similar length, each cut to its own longest.

    Per-step targets and weights are cut with their inputs. Epoch N's batches (their order and,
    through a random tie-break, their members) are drawn from (`seed`, N) alone; `epoch` is the
    first epoch `fit` will run.
    """

    def __init__(self, x, y, w=None, *, batch_size: int = 32, seed: int = 0, epoch: int = 0):
        super().__init__()
        self.x, self.y, self.w, self.batch_size = x, y, w, batch_size
        self.lengths = real_steps(x).sum(axis=1)  # steps before the NaN padding
        self.per_step = y.ndim >= 2 and y.shape[1] == x.shape[1]
        self.seed, self.epoch = seed, epoch
        self.batches = self.shuffled()

    def shuffled(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.lexsort((rng.random(len(self.x)), self.lengths))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def on_epoch_end(self):
        self.epoch += 1
        self.batches = self.shuffled()

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        rows = np.sort(self.batches[index])
        steps = int(self.lengths[rows].max())
        cut = (rows, slice(0, steps)) if self.per_step else rows
        batch = (self.x[rows, :steps], self.y[cut])
        return batch if self.w is None else (*batch, self.w[cut])
