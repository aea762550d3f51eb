"""Drop-in torch.nn layers that compute the same function faster where PyTorch's kernel is slow."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d that, with one output channel on the CPU, runs as a matrix product and F.fold.

    oneDNN's transposed convolution is pathologically slow with a single output channel: the
    reference decoder's last layer (32 -> 1 channels, 16x16 -> 32x32) took 3-6 ms forward and
    backward at batch 64, a fifth of a CPU training step, where the same sum written as
    W^T x (one matrix product per image) scattered into place by F.fold (col2im) takes about 2 ms; with
    three or more output channels PyTorch's kernel wins again. The parameters, their
    initialisation and the state dict are nn.ConvTranspose2d's; only the summation order differs.
    Every other case (CUDA, several output channels, groups, output_size, output_padding,
    unbatched input) runs nn.ConvTranspose2d's own forward.
    """

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if not self._fold_applies(x, output_size):
            return super().forward(x, output_size)
        batch, channels, height, width = x.shape
        columns = self.weight.reshape(channels, -1).t() @ x.reshape(batch, channels, height * width)
        out_size = [(size - 1) * s - 2 * p + d * (k - 1) + 1 for size, s, p, d, k in zip(
            (height, width), self.stride, self.padding, self.dilation, self.kernel_size)]
        y = F.fold(columns, out_size, self.kernel_size, self.dilation, self.padding, self.stride)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def _fold_applies(self, x: Tensor, output_size: list[int] | None) -> bool:
        return (x.device.type == "cpu" and x.dim() == 4 and self.out_channels == 1 and self.groups == 1
                and output_size is None and not any(self.output_padding))
