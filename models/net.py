"""The adps denoiser: a small EDM-style U-Net F inside mean-centred EDM preconditioning.

    D(x, σ, m) = μ + c_skip(σ)·m⊙(x−μ) + c_out(σ)·F(c_in(σ)·m⊙(x−μ), m, c_noise(σ))

with c_skip = σd²/(σ²+σd²), c_out = σ·σd/√(σ²+σd²), c_in = 1/√(σ²+σd²), c_noise = ln(σ)/4
(Karras et al. 2022, Table 1), applied to data centred on a fixed per-pixel mean image μ
estimated from the corrupted training data (pixels the training mask keeps) and σd the
RMS of the centred kept pixels. F's last layer starts at zero, so an untrained model is
the linear shrinkage μ + c_skip·m⊙(x−μ), already no worse than predicting μ.

Every op is chosen so that torch.func.vjp of the whole model traces into plain ONNX ops:
group norm, SiLU, up/down-sampling are written out with reshapes and elementwise math.
In export mode each group norm and the SiLU after it (with the block's noise-conditioned
scale and shift folded into the norm's per-channel affine) is one custom op,
group_norm_silu, whose gradient is another, group_norm_silu_grad (the analytic one): each
becomes one node of the graphs with its decomposition as an ONNX function, which adps
runs as one fused kernel (ONNX Runtime has no elementwise fusion on CPU, so written out
every full-tensor op is a pass over memory; issue #14; export.py checks the graphs
against torch's own group_norm/silu autograd). Down- and upsampling likewise get
hand-written gradients in export mode (see _Downsample).
"""
import math

import torch
from torch import nn


# Export mode: write group norm and SiLU out in plain ops so that their autograd traces into
# ONNX; training uses the fused kernels (same parameters, same math, several times faster).
EXPORT_MODE = False


def silu(x):
    return x * torch.sigmoid(x) if EXPORT_MODE else torch.nn.functional.silu(x)


class GroupNorm(nn.Module):
    def __init__(self, channels, groups=8, eps=1e-5):
        super().__init__()
        self.groups, self.eps = min(groups, channels // 4), eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        # Always followed by SiLU: export mode goes through norm_silu's fused function.
        return torch.nn.functional.group_norm(x, self.groups, self.weight, self.bias, self.eps)


def _normalised(x, a, c, groups, eps):
    """(x − mean_g) as [B, G, C/G·H·W], rstd_g as [B, G, 1], and z = group_norm(x)·a + c."""
    b, ch, h, w = x.shape
    g = x.reshape(b, groups, -1)
    centred = g - g.mean(dim=2, keepdim=True)
    rstd = torch.rsqrt((centred * centred).mean(dim=2, keepdim=True) + eps)
    return centred, rstd, (centred * rstd).reshape(b, ch, h, w) * a + c


@torch.library.custom_op("adps::group_norm_silu", mutates_args=())
def group_norm_silu(x: torch.Tensor, a: torch.Tensor, c: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """silu(group_norm(x)·a + c) for x of [B, C, H, W], a and c of [B or 1, C, 1, 1].

    Export mode's group norm + SiLU as one op, so that the exported graphs carry it as one
    node, `adps.GroupNormSiLU`, with its decomposition as an ONNX function (export.py):
    adps runs the node with a fused kernel (src/model/fused), other runtimes run the
    function. Its gradient is the op below, `adps.GroupNormSiLUGrad`.
    """
    z = _normalised(x, a, c, groups, eps)[2]
    return z * torch.sigmoid(z)


@group_norm_silu.register_fake
def _(x, a, c, groups, eps):
    return torch.empty_like(x)


@torch.library.custom_op("adps::group_norm_silu_grad", mutates_args=())
def group_norm_silu_grad(x: torch.Tensor, a: torch.Tensor, c: torch.Tensor, dy: torch.Tensor,
                         groups: int, eps: float) -> torch.Tensor:
    """The gradient of ⟨dy, group_norm_silu(x, a, c)⟩ for x only (a and c depend on σ and
    frozen parameters, never on x): with u = dz·a·rstd_g, dz = dy·(s + out·(1 − s)),
    s = sigmoid(z), dx = u − mean_g(u) − (x − mean_g)·rstd_g²·mean_g(u·(x − mean_g)), the
    textbook group-norm gradient with rstd folded into the per-channel scale."""
    b, ch, h, w = x.shape
    centred, rstd, z = _normalised(x, a, c, groups, eps)
    s = torch.sigmoid(z)
    out = z * s
    u = (dy * (s + out * (1 - s)) * a).reshape(b, groups, -1) * rstd
    k = rstd * rstd * (u * centred).mean(dim=2, keepdim=True)
    return (u - u.mean(dim=2, keepdim=True) - centred * k).reshape(b, ch, h, w)


@group_norm_silu_grad.register_fake
def _(x, a, c, dy, groups, eps):
    return torch.empty_like(x)


def _group_norm_silu_setup(ctx, inputs, output):
    x, a, c, groups, eps = inputs
    ctx.save_for_backward(x, a, c)
    ctx.groups, ctx.eps = groups, eps


def _group_norm_silu_backward(ctx, dy):
    x, a, c = ctx.saved_tensors
    return group_norm_silu_grad(x, a, c, dy, ctx.groups, ctx.eps), None, None, None, None


group_norm_silu.register_autograd(_group_norm_silu_backward, setup_context=_group_norm_silu_setup)


def norm_silu(norm, x, scale=None, shift=None):
    """silu(norm(x)·(1 + scale) + shift), or silu(norm(x)) without scale and shift."""
    if not EXPORT_MODE:
        h = norm(x)
        if scale is not None:
            h = h * (1 + scale) + shift
        return torch.nn.functional.silu(h)
    a, c = norm.weight.reshape(1, -1, 1, 1), norm.bias.reshape(1, -1, 1, 1)
    if scale is not None:
        a, c = a * (1 + scale), c * (1 + scale) + shift
    return group_norm_silu(x, a, c, norm.groups, norm.eps)


def _nearest2x(x):
    """Nearest-neighbour 2× upsampling as two Concat + Reshape (block copies in ONNX
    Runtime; broadcasting Expand runs elementwise, interpolate traces into index gathers)."""
    b, c, h, w = x.shape
    x = torch.cat([x[..., None], x[..., None]], dim=-1).reshape(b, c, h, 2 * w)
    return torch.cat([x[:, :, :, None, :], x[:, :, :, None, :]], dim=3).reshape(b, c, 2 * h, 2 * w)


class _Downsample(torch.autograd.Function):
    """2×2 average pooling as ONNX AveragePool, its gradient nearest-neighbour upsampling / 4.
    Autograd of the reshape-and-mean form traces into a 6-D Expand, which ONNX Runtime
    runs elementwise: 12% of a dps_dense evaluation at batch 8 (profiled)."""

    @staticmethod
    def forward(ctx, x):
        return torch.nn.functional.avg_pool2d(x, 2)

    @staticmethod
    def backward(ctx, grad):
        return _nearest2x(grad * 0.25)


class _Upsample(torch.autograd.Function):
    """Nearest-neighbour 2× upsampling, its gradient 4 × AveragePool."""

    @staticmethod
    def forward(ctx, x):
        return _nearest2x(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.nn.functional.avg_pool2d(grad, 2) * 4.0


def downsample(x):
    if EXPORT_MODE:
        return _Downsample.apply(x)
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def upsample(x):
    if EXPORT_MODE:
        return _Upsample.apply(x)
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


class ResBlock(nn.Module):
    """GN-SiLU-conv, noise-conditioned scale/shift, GN-SiLU-conv, residual (EDM's UNetBlock, no attention)."""

    def __init__(self, cin, cout, emb):
        super().__init__()
        self.norm0, self.conv0 = GroupNorm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb, 2 * cout)
        self.norm1, self.conv1 = GroupNorm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)

    def forward(self, x, emb):
        h = self.conv0(norm_silu(self.norm0, x))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(norm_silu(self.norm1, h, scale, shift))
        return h + (self.skip(x) if self.skip is not None else x)


class UNet(nn.Module):
    """F(x_in, mask, c_noise) on [B, C, H, W] images; three resolutions, one block each."""

    def __init__(self, img_channels=1, channels=(32, 64, 64), emb=128, freqs=32):
        super().__init__()
        self.freqs = freqs
        self.emb0, self.emb1 = nn.Linear(2 * freqs, emb), nn.Linear(emb, emb)
        c0, c1, c2 = channels
        self.conv_in = nn.Conv2d(2 * img_channels, c0, 3, padding=1)
        self.enc0, self.enc1, self.enc2 = ResBlock(c0, c0, emb), ResBlock(c0, c1, emb), ResBlock(c1, c2, emb)
        self.mid = ResBlock(c2, c2, emb)
        self.dec2, self.dec1, self.dec0 = ResBlock(2 * c2, c2, emb), ResBlock(c2 + c1, c1, emb), ResBlock(c1 + c0, c0, emb)
        self.norm_out, self.conv_out = GroupNorm(c0), nn.Conv2d(c0, img_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, c_noise):
        k = torch.arange(self.freqs, dtype=c_noise.dtype, device=c_noise.device)
        ang = c_noise[:, None] * torch.exp(-math.log(1e4) * k / self.freqs)[None] * 100.0
        e = torch.cat([torch.cos(ang), torch.sin(ang)], dim=1)
        return silu(self.emb1(silu(self.emb0(e))))

    def forward(self, x_in, mask, c_noise):
        emb = self.embed(c_noise)
        h0 = self.enc0(self.conv_in(torch.cat([x_in, mask], dim=1)), emb)
        h1 = self.enc1(downsample(h0), emb)
        h2 = self.enc2(downsample(h1), emb)
        h = self.mid(h2, emb)
        h = self.dec2(torch.cat([h, h2], dim=1), emb)
        h = self.dec1(torch.cat([upsample(h), h1], dim=1), emb)
        h = self.dec0(torch.cat([upsample(h), h0], dim=1), emb)
        return self.conv_out(norm_silu(self.norm_out, h))


class Denoiser(nn.Module):
    """D(x, σ, m) with mean-centred EDM preconditioning around the network F."""

    def __init__(self, mean_image, sigma_data, **unet_kwargs):
        super().__init__()
        self.register_buffer("mu", torch.as_tensor(mean_image, dtype=torch.float32).clone())
        self.sigma_data = float(sigma_data)
        self.F = UNet(img_channels=self.mu.shape[0], **unet_kwargs)

    def forward(self, x, sigma, mask):
        sd = self.sigma_data
        s = sigma.reshape(-1, 1, 1, 1).to(self.mu.dtype)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / torch.sqrt(s**2 + sd**2)
        c_in = 1 / torch.sqrt(s**2 + sd**2)
        c_noise = torch.log(sigma.to(self.mu.dtype)) / 4
        centred = mask * (x - self.mu)
        return self.mu + c_skip * centred + c_out * self.F(c_in * centred, mask, c_noise)


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())


class EDMStyleNet(nn.Module):
    """Our denoiser behind the calling convention of NVlabs/edm and ambient-diffusion networks.

    net(x, sigma, class_labels=None): with ambient=True, x is cat([m⊙x_t, m]) on channels
    (2C) and the output has 2C channels of which the first C are x0_hat, as in
    giannisdaras/ambient-diffusion; otherwise x is x_t (C channels). Used to test
    export.py's path for users' own EDM-style networks.
    """

    def __init__(self, img_channels=1, img_resolution=32, sigma_data=0.5, ambient=True,
                 channels=(16, 48, 96), emb=128):
        super().__init__()
        self.img_channels, self.img_resolution, self.ambient = img_channels, img_resolution, ambient
        self.sigma_data = float(sigma_data)
        self.model = Denoiser(torch.zeros(img_channels, img_resolution, img_resolution), sigma_data,
                              channels=tuple(channels), emb=emb)

    def forward(self, x, sigma, class_labels=None, **kwargs):
        sigma = sigma.reshape(-1)
        if not self.ambient:
            return self.model(x, sigma, torch.ones_like(x))
        c = self.img_channels
        mask = x[:, c:]
        return torch.cat([self.model(x[:, :c], sigma, mask), mask], dim=1)
