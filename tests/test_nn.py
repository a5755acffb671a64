"""Backbones: shapes, interfaces, paper sizes and parameter counts, norm semantics, noise injection."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo.nn  # noqa: F401  (registers the backbones)
from zoo.nn.layers import InjectNoise, dcgan_init_, make_norm, make_output_activation, param_count
from zoo.registry import BACKBONES

# every image family, the sizes it supports (all tested), a tiny width, and one unsupported size
IMAGE_FAMILIES = {
    "rosca_mnist": ((28,), 8, 32, "28"),
    "dcgan": ((8, 16, 32, 64), 8, 24, "powers of two >= 8"),
    "resnet": ((16, 32, 64), 8, 28, "16, 32, 64"),
    "ijae": ((16, 32, 64), 8, 28, "16, 32, 64"),
    "jsg": ((32, 64), 8, 28, "32, 64"),
}
CASES = [(fam, size) for fam, (sizes, *_) in IMAGE_FAMILIES.items() for size in sizes]
EXTRA_NAMES = {"ijae.pair_discriminator", "ijae.joint_discriminator", "mlp.code_discriminator", "mlp.discriminator",
               "mlp.generator", "mlp.encoder", "heads.joint_discriminator"}
B, LATENT, CH = 3, 6, 3


def build(name: str, *args, **kwargs) -> nn.Module:
    return BACKBONES.get(name)(*args, **kwargs)


def conv_output_shapes(model: nn.Module, x: torch.Tensor, kinds=(nn.Conv2d, nn.ConvTranspose2d)) -> list[tuple]:
    """(C, H, W) of the output of every module of the given kinds, in call order."""
    shapes: list[tuple] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
             for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


def test_registered_names_are_all_covered_here():
    expected = {f"{fam}.{kind}" for fam in IMAGE_FAMILIES for kind in ("generator", "discriminator", "encoder")}
    assert set(BACKBONES.names()) == expected | EXTRA_NAMES


# --------------------------------------------------------------------------------------- uniform interface, all sizes
@pytest.mark.parametrize("family,size", CASES)
def test_generator_shape_and_output_activation(family, size):
    width = IMAGE_FAMILIES[family][1]
    z = torch.randn(B, LATENT)
    outs = {}
    for act in ("tanh", "sigmoid", None):
        torch.manual_seed(0)  # same weights for the three builds: only the final activation differs
        g = build(f"{family}.generator", LATENT, CH, size, width, output_activation=act).eval()
        with torch.no_grad():
            outs[act] = g(z)
    raw = outs[None]
    assert raw.shape == (B, CH, size, size) and torch.isfinite(raw).all()
    torch.testing.assert_close(outs["tanh"], torch.tanh(raw))
    torch.testing.assert_close(outs["sigmoid"], torch.sigmoid(raw))


@pytest.mark.parametrize("family,size", CASES)
def test_discriminator_is_head_of_features(family, size):
    width = IMAGE_FAMILIES[family][1]
    d = build(f"{family}.discriminator", CH, size, width).eval()
    x = torch.randn(B, CH, size, size)
    torch.manual_seed(1)  # the IJAE discriminators draw noise: replay the same draws for both paths
    out = d(x)
    torch.manual_seed(1)
    feats = d.features(x)
    assert out.shape == (B,) and torch.isfinite(out).all()
    assert isinstance(d.feature_dim, int) and feats.shape == (B, d.feature_dim)
    torch.testing.assert_close(out, d.head(feats).squeeze(-1))


@pytest.mark.parametrize("family,size", CASES)
def test_encoder_shape_and_unbounded_output(family, size):
    width = IMAGE_FAMILIES[family][1]
    e = build(f"{family}.encoder", 2 * LATENT, CH, size, width)
    out = e(torch.randn(8, CH, size, size))
    assert out.shape == (8, 2 * LATENT) and torch.isfinite(out).all()
    # nothing after the last layer: a ReLU / sigmoid would leave no negative values, a tanh nothing beyond +-1
    assert (out < 0).any()
    last = [m for m in e.modules() if not list(m.children())][-1]
    assert isinstance(last, (nn.Linear, nn.Flatten))


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
@pytest.mark.parametrize("kind", ["generator", "discriminator", "encoder"])
def test_unsupported_image_size_names_supported(family, kind):
    _, width, bad, supported = IMAGE_FAMILIES[family]
    args = {"generator": (LATENT, CH, bad, width), "discriminator": (CH, bad, width),
            "encoder": (LATENT, CH, bad, width)}[kind]
    with pytest.raises(ValueError, match=f"unsupported image_size {bad}; supported sizes: {supported}"):
        build(f"{family}.{kind}", *args)


def test_bad_arguments_teach():
    with pytest.raises(ValueError, match="choose one of 'batch', 'layer', 'none'"):
        build("dcgan.discriminator", CH, 32, 8, norm="instance")
    with pytest.raises(ValueError, match="output_activation"):
        make_output_activation("relu")
    with pytest.raises(ValueError, match="multiple of 8"):
        build("rosca_mnist.discriminator", CH, 28, 12)
    with pytest.raises(ValueError, match="keep-probability"):
        build("rosca_mnist.discriminator", CH, 28, 64, dropout=1.0)


# -------------------------------------------------------------------------------------- Rosca App. K, Tables 4 and 5
def test_rosca_table5_generator_sizes_and_count():
    latent = 10
    g = build("rosca_mnist.generator", latent, 3, 28, 64).eval()
    assert conv_output_shapes(g, torch.randn(2, latent), (nn.ConvTranspose2d,)) == [(64, 14, 14), (32, 14, 14),
                                                                                    (3, 28, 28)]
    assert g.net[0].out_features == 3136 == 64 * 7 * 7
    expected = (
        latent * 3136  # Linear (no bias: BatchNorm follows)
        + 2 * 64  # BatchNorm of the 64 x 7 x 7 map
        + 64 * 64 * 25 + 2 * 64  # TransposedConv 5x5 s2 -> 64, BatchNorm
        + 64 * 32 * 25 + 2 * 32  # TransposedConv 5x5 s1 -> 32, BatchNorm
        + 32 * 3 * 25 + 3  # TransposedConv 5x5 s2 -> 3, with bias
    )
    assert param_count(g) == expected


def test_rosca_table4_discriminator_sizes_count_and_dropout():
    d = build("rosca_mnist.discriminator", 3, 28, 64).eval()
    assert conv_output_shapes(d, torch.randn(2, 3, 28, 28)) == [(8, 14, 14), (16, 14, 14), (32, 7, 7), (64, 7, 7),
                                                                (64, 4, 4)]
    expected = (
        3 * 8 * 25 + 8  # first conv: bias, no norm
        + 8 * 16 * 25 + 2 * 16  # each further conv: no bias, BatchNorm
        + 16 * 32 * 25 + 2 * 32
        + 32 * 64 * 25 + 2 * 64
        + 64 * 64 * 25 + 2 * 64
        + 64 * 4 * 4 + 1  # Linear adv, one logit
    )
    assert param_count(d) == expected and d.feature_dim == 1024
    assert not any(isinstance(m, nn.Dropout) for m in d.modules())
    dropped = build("rosca_mnist.discriminator", 3, 28, 64, dropout=0.2)
    assert isinstance(dropped.body[-1], nn.Dropout) and dropped.body[-1].p == 0.2


def test_rosca_encoder_is_transposed_generator():
    e = build("rosca_mnist.encoder", 20, 3, 28, 64).eval()
    assert conv_output_shapes(e, torch.randn(2, 3, 28, 28)) == [(32, 14, 14), (64, 14, 14), (64, 7, 7)]
    expected = (3 * 32 * 25 + 2 * 32) + (32 * 64 * 25 + 2 * 64) + (64 * 64 * 25 + 2 * 64) + (3136 * 20 + 20)
    assert param_count(e) == expected


# ------------------------------------------------------------------------------------------------------------ DCGAN
def test_dcgan_channel_pyramid_64px():
    g = build("dcgan.generator", 100, 3, 64, 64).eval()
    assert conv_output_shapes(g, torch.randn(2, 100)) == [(512, 4, 4), (256, 8, 8), (128, 16, 16), (64, 32, 32),
                                                          (3, 64, 64)]
    d = build("dcgan.discriminator", 3, 64, 64).eval()
    assert conv_output_shapes(d, torch.randn(2, 3, 64, 64)) == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert d.feature_dim == 512 * 16
    # the WGAN code has no bias anywhere (BatchNorm shifts instead); our Linear head is its final 4x4 conv
    assert all(m.bias is None for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_dcgan_init():
    g = build("dcgan.generator", 100, 3, 64, 64)
    w = g.net[1].weight  # ConvTranspose 100 -> 512
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    bn = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1.0) < 0.005 and abs(bn.std().item() - 0.02) < 0.005
    lin = dcgan_init_(nn.Linear(4000, 10))
    assert abs(lin.weight.std().item() - 0.02) < 0.001 and (lin.bias == 0).all()


# ---------------------------------------------------------------------------------------------------- norm kinds
NORM_FAMILIES = [("rosca_mnist", 28), ("dcgan", 32), ("resnet", 32), ("ijae", 32)]


def _disc_outputs_alone_vs_batch(d: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kwargs = {}
    if hasattr(d, "n_injections"):  # fixed noise so that only batch statistics could make a difference
        kwargs["noise"] = torch.randn(x.shape[0], d.n_injections, d.noise_dim)
    d.train()  # the gradient penalty is computed in training mode
    with torch.no_grad():
        together = d(x, **kwargs)
        alone = torch.cat([d(x[i:i + 1], **{k: v[i:i + 1] for k, v in kwargs.items()}) for i in range(len(x))])
    return together, alone


@pytest.mark.parametrize("family,size", NORM_FAMILIES)
def test_norm_kinds(family, size):
    x = torch.randn(4, CH, size, size)
    none = build(f"{family}.discriminator", CH, size, 8, norm="none")
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm)) for m in none.modules())
    layer = build(f"{family}.discriminator", CH, size, 8, norm="layer")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layer.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in layer.modules())
    together, alone = _disc_outputs_alone_vs_batch(layer, x)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    # the same check must catch BatchNorm, or it would prove nothing
    together, alone = _disc_outputs_alone_vs_batch(build(f"{family}.discriminator", CH, size, 8, norm="batch"), x[:2])
    assert not torch.allclose(together, alone, atol=1e-3)


def test_make_norm_layer_is_per_sample_over_chw():
    x = torch.randn(2, 4, 5, 5) * 3 + 1
    y = make_norm("layer", 4)(x)
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-3, rtol=0)


# ---------------------------------------------------------------------------------------------- IJAE: noise, pairs
def test_inject_noise_is_a_per_channel_shift():
    inj = InjectNoise(16, 5)
    h = torch.randn(2, 5, 4, 6)
    xi = torch.randn(2, 16)
    shift = inj(h, xi) - h
    torch.testing.assert_close(shift, inj.proj(xi)[:, :, None, None].expand_as(h))  # constant over H, W
    fresh = inj(torch.zeros(2, 5, 3, 3))[:, :, 0, 0]
    assert not torch.allclose(fresh[0], fresh[1])  # one xi per example
    with pytest.raises(ValueError, match=r"\(B, noise_dim\) = \(2, 16\)"):
        inj(h, torch.randn(2, 8))


def test_ijae_encoder_noise_per_channel():
    e = build("ijae.encoder", LATENT, CH, 32, 8, noise_dim=128, noise="channel").eval()
    x = torch.randn(2, CH, 32, 32)
    noise = torch.randn(2, 3, 128)
    torch.testing.assert_close(e(x, noise), e(x, noise))  # deterministic given the noise: E(x, xi)
    assert not torch.allclose(e(x), e(x))  # fresh noise per call, also in eval mode
    seen = {}
    e.stem.noise1.register_forward_hook(lambda m, inp, out: seen.update(shift=out - inp[0]))
    e(x, noise)
    shift = seen["shift"]  # (B, C, 16, 16)
    torch.testing.assert_close(shift, shift[:, :, :1, :1].expand_as(shift))
    torch.testing.assert_close(shift[:, :, 0, 0], e.stem.noise1.proj(noise[:, 0]))
    with pytest.raises(ValueError, match=r"\(B, n_injections, noise_dim\) = \(2, 3, 128\)"):
        e(x, torch.randn(2, 2, 128))


def test_ijae_encoder_noise_per_position():
    """Default encoder: learned noise maps Linear(noise_dim, C*H*W) after blocks 1-2, xi added unprojected before the
    Linear; every injection is exactly h + its formula, and the noise varies over positions."""
    e = build("ijae.encoder", LATENT, CH, 32, 8).eval()
    x, noise = torch.randn(2, CH, 32, 32), torch.randn(2, 3, 8)
    torch.testing.assert_close(e(x, noise), e(x, noise))
    assert not torch.allclose(e(x), e(x))
    seen = {}
    for name in ("noise1", "noise2"):
        getattr(e.stem, name).register_forward_hook(lambda m, inp, out, n=name: seen.update({n: out - inp[0]}))
    e.noise3.register_forward_hook(lambda m, inp, out: seen.update(noise3=out - inp[0]))
    e(x, noise)
    assert e.stem.noise1.proj.out_features == 8 * 16 * 16 and e.stem.noise2.proj.out_features == 8 * 8 * 8
    torch.testing.assert_close(seen["noise1"], e.stem.noise1.proj(noise[:, 0]).view(2, 8, 16, 16))
    torch.testing.assert_close(seen["noise2"], e.stem.noise2.proj(noise[:, 1]).view(2, 8, 8, 8))
    assert seen["noise1"].std(dim=(2, 3)).min() > 0.1  # not constant over H, W
    torch.testing.assert_close(seen["noise3"], noise[:, 2, :, None, None].expand(2, 8, 2, 2))
    assert param_count(e.noise3) == 0
    with pytest.raises(ValueError, match="noise_dim must equal the channel count; got noise_dim 128, channels 8"):
        build("ijae.encoder", LATENT, CH, 32, 8, noise_dim=128)  # position mode needs noise_dim == width
    with pytest.raises(ValueError, match=r"built for feature maps \(8, 16, 16\), got \(8, 8, 8\)"):
        e.stem.noise1(torch.zeros(2, 8, 8, 8))


def test_inject_noise_scale_at_initialisation():
    """Noise normalisation: xi ~ N(0, I) is not rescaled, so both learned modes add per-element variance
    E[sum_j w_j^2 + b^2] = 1/3 + 1/(3 noise_dim) under PyTorch's U(+-1/sqrt(noise_dim)) init; "free" adds 1."""
    torch.manual_seed(0)
    d, n = 128, 4000
    expected = 1 / 3 + 1 / (3 * d)
    h = torch.zeros(n, 16, 4, 4)
    for mode in ("channel", "position"):
        var = torch.stack([InjectNoise(d, 16, mode, (4, 4))(h).var() for _ in range(8)]).mean()
        assert abs(var.item() - expected) < 0.03, (mode, var.item())
    assert abs(InjectNoise(16, 16, "free")(h).var().item() - 1) < 0.02


def test_ijae_pair_discriminator_stacks_horizontally():
    d = build("ijae.pair_discriminator", LATENT, CH, 32, 8).eval()
    x, y, z = torch.randn(2, CH, 32, 32), torch.randn(2, CH, 32, 32), torch.randn(2, LATENT)
    seen = {}
    d.body.stem.block1.register_forward_pre_hook(lambda m, inp: seen.update(stacked=inp[0]))
    noise = torch.randn(2, 2, 128)
    out = d(x, y, z, noise=noise)
    assert seen["stacked"].shape == (2, CH, 32, 64)
    torch.testing.assert_close(seen["stacked"], torch.cat([x, y], dim=-1))
    feats = d.features(x, y, z, noise=noise)
    assert feats.shape == (2, 8 + LATENT) == (2, d.feature_dim)
    torch.testing.assert_close(feats[:, 8:], z)
    torch.testing.assert_close(out, d.head(feats).squeeze(-1))
    assert out.shape == (2,)


def test_ijae_joint_discriminator():
    d = build("ijae.joint_discriminator", LATENT, CH, 32, 8)
    x, z = torch.randn(2, CH, 32, 32), torch.randn(2, LATENT)
    out = d(x, z)
    assert out.shape == (2,) and torch.isfinite(out).all()
    torch.testing.assert_close(out, d.head(d.features(x, z)).squeeze(-1))
    assert d.mlp[0].in_features == 8 * 8 * 8 + LATENT


APP_D_WEIGHTS = {"encoder": 6436224, "generator": 1154179, "discriminator": 1053825, "pair_discriminator": 1054081,
                 "joint_discriminator": 4526273}  # IJAE App. D, "#Weights" under each table


def test_ijae_parameter_counts_at_paper_sizes():
    """Every App. D #Weights at latent 128, width 128, noise 128, 3 x 32 x 32 (zoo/nn/resnet.py, docs/models.md)."""
    paper = APP_D_WEIGHTS
    assert param_count(build("ijae.encoder", 128, 3, 32)) == paper["encoder"]  # default noise="position", exact
    assert param_count(build("ijae.generator", 128, 3, 32)) == paper["generator"]
    assert param_count(build("ijae.joint_discriminator", 128, 3, 32)) == paper["joint_discriminator"]
    assert param_count(build("ijae.discriminator", 3, 32, noise="free")) == paper["discriminator"]
    # Table 6 is 128 over Table 5 + the wider Linear 256 -> 1; no reading of the table explains the 128 (documented)
    assert param_count(build("ijae.pair_discriminator", 128, 3, 32, noise="free")) == paper["pair_discriminator"] - 128
    # the table-text options: three / two per-channel Linear(128, 128) projections on top
    per_channel = 128 * 128 + 128
    assert param_count(build("ijae.encoder", 128, 3, 32, noise="channel")) == 1152384 + 3 * per_channel == 1201920
    assert param_count(build("ijae.discriminator", 3, 32)) == paper["discriminator"] + 2 * per_channel
    assert param_count(build("ijae.pair_discriminator", 128, 3, 32)) == paper["pair_discriminator"] - 128 \
        + 2 * per_channel


def test_ijae_model_players_have_the_app_d_counts():
    """The default model at paper sizes (disc_noise "free", enc_noise "position"): every player as counted in App. D
    (pair: -128, see above); the text's per-channel discriminator projections add Linear(128, 128) twice each."""
    from zoo.models.ijae import IJAE, IJAEConfig
    model = IJAE(IJAEConfig())
    counts = {name: param_count(p) for name, p in model.players.items()}
    assert counts == {"encoder": 6436224, "generator": 1154179, "disc_x": 1053825, "disc_pair": 1054081 - 128,
                      "disc_joint": 4526273}
    text = IJAE(IJAEConfig(disc_noise="channel")).players
    assert param_count(text["disc_x"]) - 1053825 == param_count(text["disc_pair"]) - (1054081 - 128) == 2 * 16512


# ---------------------------------------------------------------------------------------------- resnet, jsg, mlp
def test_resnet_resampling_path_32px():
    g = build("resnet.generator", LATENT, CH, 32, 8).eval()
    blocks = [m for m in g if type(m).__name__ == "ResBlock"]
    shapes = []
    for blk in blocks:
        blk.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape[1:])))
    g(torch.randn(2, LATENT))
    assert shapes == [(8, 8, 8), (8, 16, 16), (8, 32, 32)]
    d = build("resnet.discriminator", CH, 32, 8)
    shapes.clear()
    for blk in list(d.body)[:-1]:
        blk.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape[1:])))
    x = torch.randn(2, CH, 32, 32)
    feats = d.features(x)
    assert shapes == [(8, 16, 16), (8, 8, 8), (8, 8, 8), (8, 8, 8)]
    torch.testing.assert_close(feats, d.body(x).mean(dim=(2, 3)))  # mean pooling, as Gulrajani's reduce_mean


def test_jsg_table3_count_and_sigmoid_default():
    e = build("jsg.encoder", 20, 1, 32)  # MNIST: 10 latents, mean + log-variance
    expected = (1 * 32 * 16 + 32) + 2 * (32 * 32 * 16 + 32) + (512 * 256 + 256) + (256 * 256 + 256) + (256 * 20 + 20)
    assert param_count(e) == expected
    assert sum(isinstance(m, nn.Conv2d) for m in build("jsg.encoder", 20, 1, 64).modules()) == 4
    g = build("jsg.generator", 10, 1, 32)
    out = g(torch.randn(4, 10))
    assert out.shape == (4, 1, 32, 32) and ((out > 0) & (out < 1)).all()
    with pytest.raises(ValueError, match="norm must be 'none'"):
        build("jsg.discriminator", 1, 32, norm="batch")


def test_mlp_backbones():
    cd = build("mlp.code_discriminator", 50)
    assert param_count(cd) == (50 * 1000 + 1000) + 2 * (1000 * 1000 + 1000) + (1000 + 1)
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in cd.modules()) == 3
    z = torch.randn(5, 50)
    out = cd(z)
    assert out.shape == (5,) and cd.feature_dim == 1000
    torch.testing.assert_close(out, cd.head(cd.features(z)).squeeze(-1))
    g = build("mlp.generator", 2, 1, hidden=16, layers=2)
    d = build("mlp.discriminator", 1, hidden=16, layers=2)
    e = build("mlp.encoder", 4, 1, hidden=16, layers=2)
    x = g(torch.randn(7, 2))
    assert x.shape == (7, 1) and d(x).shape == (7,) and e(x).shape == (7, 4) and d.features(x).shape == (7, 16)
    torch.testing.assert_close(d(x), d.head(d.features(x)).squeeze(-1))


# --------------------------------------------------------------------------------------------- Rosca Table 6 joint head
@pytest.mark.parametrize("family,size", [("rosca_mnist", 28), ("dcgan", 32), ("dcgan", 64)])
def test_joint_head_reduces_the_4x4_map_to_one_position(family, size):
    d = build("heads.joint_discriminator", LATENT, CH, size, family=family, width=8, code_hidden=16, joint_width=12)
    x, z = torch.randn(B, CH, size, size), torch.randn(B, LATENT)
    joined = torch.randn(B, d.data_maps + 16, 4, 4)  # data map + 16 tiled code features
    assert conv_output_shapes(d.joint, joined) == [(12, 2, 2), (12, 1, 1)]  # Conv 3x3 s1, Conv 2x2 s1
    assert d(x, z).shape == (B,) and d.features(x, z).shape == (B, 12) and d.feature_dim == 12
    torch.testing.assert_close(d(x, z), d.head(d.features(x, z)).squeeze(-1))
    assert not hasattr(d.data, "head") and not hasattr(d.code, "head")  # "excluding the classification layer"
    conv3, norm3, _, conv2, act2, _ = d.joint  # no norm on the 1x1 map that feeds the logit (docs/models.md)
    assert isinstance(norm3, nn.GroupNorm) and norm3.num_groups == 1 and conv3.bias is None  # per-example layer norm
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())  # data features included
    assert conv2.kernel_size == (2, 2) and conv2.bias is not None and isinstance(act2, nn.LeakyReLU)


def test_joint_head_input_is_the_data_map_beside_the_tiled_code_features():
    d = build("heads.joint_discriminator", LATENT, CH, 28, width=8, code_hidden=16, joint_width=12).eval()
    x, z = torch.randn(B, CH, 28, 28), torch.randn(B, LATENT)
    seen = []
    hook = d.joint[0].register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        d(x, z)
        data_map = d.data.body[:-1](x)  # the Table 4 convolutions before the flatten: (B, 8, 4, 4)
        code = d.code.features(z)  # (B, 16)
    hook.remove()
    (joined,) = seen
    assert joined.shape == (B, 8 + 16, 4, 4)
    torch.testing.assert_close(joined[:, :8], data_map)
    torch.testing.assert_close(joined[:, 8:], code[:, :, None, None].expand(-1, -1, 4, 4))


def test_joint_head_parameter_count_at_paper_size():
    d = build("heads.joint_discriminator", 50, 3, 28, joint_width=512)
    # Table 4 without Linear adv, layer norm (GroupNorm(1, C): the same 2C affine parameters as batch norm)
    data = param_count(build("rosca_mnist.discriminator", 3, 28, 64, norm="layer")) - (1024 + 1)
    code = (50 * 1000 + 1000) + 2 * (1000 * 1000 + 1000)  # 3 x 1000 MLP without its logit layer
    head = (64 + 1000) * 512 * 9 + 2 * 512 + 512 * 512 * 4 + 512 + 512 + 1  # 3x3 + norm, 2x2 + bias, Linear
    assert param_count(d) == data + code + head


@pytest.mark.parametrize("norm", ["layer", "none"])
def test_joint_head_logit_of_a_pair_does_not_depend_on_its_batch(norm):
    """A density ratio is a function of one (x, z) pair: in train mode, scoring a batch alone or inside a larger batch
    (here beside pairs of another distribution) gives the same logits (train-mode batch norm would not)."""
    torch.manual_seed(0)
    d = build("heads.joint_discriminator", LATENT, CH, 28, width=8, code_hidden=16, joint_width=12, norm=norm).train()
    x, z = torch.randn(B, CH, 28, 28), torch.randn(B, LATENT)
    x2, z2 = 3 * torch.rand(5, CH, 28, 28), 4 + torch.randn(5, LATENT)  # a very different second class
    with torch.no_grad():
        alone, mixed = d(x, z), d(torch.cat([x, x2]), torch.cat([z, z2]))[:B]
    torch.testing.assert_close(mixed, alone, rtol=1e-5, atol=1e-5)


def test_joint_head_refuses_batch_norm_and_says_why():
    with pytest.raises(ValueError, match=r"norm 'batch' makes a logit depend on the other examples of its batch.*"
                                         r"use one of 'layer', 'none' \(disc_norm"):
        build("heads.joint_discriminator", LATENT, CH, 28, width=8, norm="batch")


def test_joint_head_needs_a_spatial_family():
    with pytest.raises(ValueError, match=r"family 'resnet' has no 4x4 feature map.*rosca_mnist, dcgan"):
        build("heads.joint_discriminator", LATENT, CH, 32, family="resnet")
