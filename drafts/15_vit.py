# %% [markdown]
# # Vision Transformer
#
# Everything so far has read text: a sequence of tokens, each looked up in an embedding table. The Vision
# Transformer (ViT) of {cite:t}`dosovitskiy2021image` reads images with the same machinery and almost no
# change. It cuts the image into small square patches, flattens each patch into a vector, projects it to
# the model width with one linear layer, and from there on a patch *is* a token: an encoder of the kind you
# built in Part III (bidirectional attention, pre-norm blocks) processes the sequence, and a classifier reads
# one extra token, `[CLS]`, at the end. The paper's title says it: "An image is worth 16x16 words".
#
# In this chapter you will:
#
# - cut an image into patches by hand, first with loops and then with one `reshape` and `permute`, and
#   prove that the patch embedding, a `Linear` over flattened patches, **is** a `Conv2d` whose kernel size
#   and stride equal the patch size (values and gradients);
# - put a `[CLS]` token in front and add learned position embeddings, and see that without them a ViT is
#   blind to where its patches are: shuffle the patches, and the prediction does not change;
# - assemble tinycore's `ViT` from the `TransformerBlock` of chapter 9 and prove that it equals a ViT built
#   from PyTorch's own `nn.Conv2d` and `nn.TransformerEncoder` with copied weights;
# - train a tiny ViT on scikit-learn's 8x8 handwritten digits in about 20 seconds of CPU time, and measure
#   it beside the baselines you would compare it with: a support-vector machine, an MLP and a small
#   convolutional network trained the same way;
# - open the trained model: the `[CLS]` token's attention over the patches, and the similarity of the
#   learned position embeddings, where the model has rediscovered the 2-D layout of the image from a
#   1-D list of positions.

# %%
# Setup: in Colab, install tinycore (this course's package) from the course repository.
try:
    import google.colab  # noqa: F401  (only importable inside Colab)
    %pip install -q "tinycore @ git+https://github.com/transformer-anatomy/transformer-anatomy@main"
except ImportError:
    pass  # elsewhere tinycore is installed with the course: see the README

# %%
import inspect
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle
from torch import nn
from ipywidgets import Dropdown, IntSlider, interact

import tinycore
import tinycore.vit
from tinycore import TrainConfig, check_shape, checks, count_parameters, set_seed, train
from tinycore.images import image_batches, load_digits_split, random_affine, random_shift
from tinycore.plotting import heatmap, plot_curves, use_style
from tinycore.vit import PatchEmbedding, ViT, ViTConfig

gen = set_seed(0)
use_style()

# %% [markdown]
# ## The data: 1,797 handwritten digits
#
# scikit-learn ships a small classic: 1,797 handwritten digits, each an $8 \times 8$ grey image with pixel
# values from 0 to 16 (Alpaydin and Kaynak's optical-recognition set, downsampled from $32 \times 32$
# bitmaps). Its gallery example "Recognizing hand-written digits" trains on the **first half** and tests on
# the **second half**, without shuffling, and a support-vector machine scores 96.9% there. The split is
# harder than a random one: the two halves were written partly by different people, so the test asks
# whether a model generalises to new handwriting, not just to new copies of familiar writers.
#
# `tinycore.images.load_digits_split` returns exactly that split as tensors of shape $(N, C, H, W)$ with
# one channel, normalised with the mean and standard deviation of the *training* pixels (no peeking at
# the test set):

# %%
data = load_digits_split()
print(data)
print("classes in the training half:", torch.bincount(data.y_train).tolist())
x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test  # (898, 1, 8, 8), ...

fig, axes = plt.subplots(2, 10, figsize=(10, 2.5))
for col in range(10):
    for row, (x, y, half) in enumerate([(x_train, y_train, "train"), (x_test, y_test, "test")]):
        i = int((y == col).nonzero()[0])  # the first image of this class in that half
        axes[row, col].imshow(x[i, 0], cmap="gray_r")
        axes[row, col].set(xticks=[], yticks=[], title=f"{half} {col}" if row == 0 else None)
    axes[1, col].set_xlabel(f"test {col}", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## An image as a sequence of patches
#
# A transformer wants a sequence of vectors. Attending over single pixels would make a long sequence
# (64 tokens here; 50,176 for a $224 \times 224$ photo, whose attention matrix would hold 2.5 billion
# entries). ViT instead cuts the image $\mathbf{x} \in \mathbb{R}^{C \times H \times W}$ into
# non-overlapping $p \times p$ patches and flattens each one:
#
# $$
# \mathbf{x} \in \mathbb{R}^{C \times H \times W} \;\longrightarrow\;
# \mathbf{x}_p \in \mathbb{R}^{P \times (C p^2)}, \qquad P = \frac{H W}{p^2}.
# $$
#
# The paper uses $p = 16$ on $224 \times 224$ images, so $P = 196$ tokens. On our $8 \times 8$ digits,
# $p = 2$ gives a $4 \times 4$ grid of $P = 16$ patches of 4 pixels, and $p = 4$ gives 4 patches of 16
# pixels. The patches are numbered row by row, like the words of a page:

# %%
digit = x_test[0, 0]  # (8, 8): a test image
fig = plt.figure(figsize=(10, 2.6))
ax = fig.add_axes([0.0, 0.05, 0.22, 0.85])
ax.imshow(digit, cmap="gray_r")
for k in range(1, 4):
    ax.axhline(2 * k - 0.5, color="C1", lw=2)
    ax.axvline(2 * k - 0.5, color="C1", lw=2)
for idx in range(16):
    ax.text(2 * (idx % 4) + 0.5, 2 * (idx // 4) + 0.5, str(idx), color="C1", ha="center", va="center", fontsize=9)
ax.set(xticks=[], yticks=[], title=f"a test digit ({int(y_test[0])}), p = 2")
for idx in range(16):  # the same 16 patches as a sequence of tokens
    r, c = divmod(idx, 4)
    sub = fig.add_axes([0.26 + idx * 0.046, 0.35, 0.04, 0.3])
    sub.imshow(digit[2 * r:2 * r + 2, 2 * c:2 * c + 2], cmap="gray_r", vmin=float(digit.min()), vmax=float(digit.max()))
    sub.set(xticks=[], yticks=[])
    sub.set_title(str(idx), fontsize=8)
fig.text(0.26, 0.12, "... a sequence of P = 16 tokens, each a 2 x 2 patch flattened to 4 numbers", fontsize=10)
plt.show()

# %% [markdown]
# Written as a loop, the definition reads: for each patch row $i$ and patch column $j$, take the
# $p \times p$ square at $(ip, jp)$ from every channel and flatten it.

# %%
def patchify_loop(images, p):
    """(B, C, H, W) -> (B, P, C p p): patches row by row, each flattened (channel, row, column)."""
    B, C, H, W = images.shape
    patches = []
    for i in range(H // p):
        for j in range(W // p):
            square = images[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p]  # (B, C, p, p)
            patches.append(square.reshape(B, C * p * p))  # (B, C p p)
    return torch.stack(patches, dim=1)  # P x (B, C p p) -> (B, P, C p p)


# %% [markdown]
# The vectorised version never copies a patch by hand. View the height $H$ as $(H/p, p)$ and the width as
# $(W/p, p)$: an index into the image becomes (patch row, row within the patch, patch column, column within
# the patch). Moving the two patch-grid axes in front and flattening the rest gives every patch's values in
# the same (channel, row, column) order as the loop. That is tinycore's `patchify`:

# %%
print(inspect.getsource(tinycore.vit.patchify))

# %%
B, C, H, W, p = 3, 2, 8, 12, 4  # every size different, to catch a swapped axis
images = torch.randn(B, C, H, W, generator=gen)
patches = check_shape(tinycore.vit.patchify(images, p), (B, (H // p) * (W // p), C * p * p), "B P Cpp", "patches")
print("patches:", tuple(patches.shape))
print("loop == reshape/permute (exactly):", torch.equal(patchify_loop(images, p), patches))
print("== F.unfold, transposed:", torch.equal(F.unfold(images, kernel_size=p, stride=p).transpose(1, 2), patches))

# %% [markdown]
# (`F.unfold` extracts sliding blocks for convolutions; with stride $p$ its blocks do not overlap and come
# out as $(B, C p^2, P)$, in the same order.)
#
# ## The patch embedding is a strided convolution
#
# Each flattened patch is projected to the model width $D$ by one learned matrix
# $\mathbf{E} \in \mathbb{R}^{(C p^2) \times D}$, the same for every patch, plus a bias: token $i$ is
# $\mathbf{x}_p^i \mathbf{E} + \mathbf{b}$. Now look at a convolution with $D$ filters of size
# $C \times p \times p$ moved with stride $p$: it visits exactly the same non-overlapping squares, and at
# each one it computes the dot product of every filter with the pixels underneath, plus a bias. The two are
# the same computation, with the filters $(D, C, p, p)$ flattened into the rows of a `Linear` weight
# $(D, C p^2)$. This is why the paper calls its patch embedding a linear projection, and why the code of
# every ViT library (including the reference implementation) computes it with a `Conv2d`.
#
# tinycore's `PatchEmbedding` takes the `Linear` route. Copy the weights of a `nn.Conv2d` into it, and the
# outputs and the gradients agree:

# %%
D = 10
conv = nn.Conv2d(C, D, kernel_size=p, stride=p).double()
embed = PatchEmbedding(p, C, D).double()
with torch.no_grad():
    embed.proj.weight.copy_(conv.weight.reshape(D, C * p * p))  # (D, C, p, p) -> (D, C p p)
    embed.proj.bias.copy_(conv.bias)

x1 = images.double().requires_grad_(True)
x2 = images.double().requires_grad_(True)
tokens = embed(x1)  # (B, C, H, W) -> (B, P, D)
conv_tokens = conv(x2).flatten(2).transpose(1, 2)  # (B, D, H/p, W/p) -> (B, D, P) -> (B, P, D)
upstream = torch.randn(tokens.shape, generator=gen, dtype=torch.float64)
tokens.backward(upstream)
conv_tokens.backward(upstream)
print("conv output:", tuple(conv(x2).shape), "-> tokens", tuple(conv_tokens.shape))
print("forward equal to 1e-12:", (tokens - conv_tokens).abs().max().item() < 1e-12)
print("gradients equal to 1e-12 (input, weight, bias):",
      (x1.grad - x2.grad).abs().max().item() < 1e-12,
      (embed.proj.weight.grad - conv.weight.grad.reshape(D, -1)).abs().max().item() < 1e-12,
      (embed.proj.bias.grad - conv.bias.grad).abs().max().item() < 1e-12)

# %% [markdown]
# Notice what a patch embedding is *not*: it is a convolution whose windows never overlap, applied once.
# Nothing in it relates a patch to its neighbours; every bit of spatial reasoning beyond a $p \times p$
# square is left to attention. Keep that in mind for the experiment below.
#
# ## `[CLS]` and learned positions
#
# Two things are added before the encoder. BERT's trick {cite:p}`devlin2019bert`: a learned vector
# $\mathbf{x}_{\text{cls}} \in \mathbb{R}^D$, the same for every image, is put in front of the patch tokens;
# it has no pixels of its own, so after the encoder it holds whatever the attention layers gathered from
# the patches, and the classifier reads it. And a learned position embedding
# $\mathbf{E}_{\text{pos}} \in \mathbb{R}^{(P + 1) \times D}$ (row 0 for `[CLS]`, row $i$ for patch $i$) is
# added, as in GPT-2. Equation (1) of the paper:
#
# $$
# \mathbf{z}_0 = [\,\mathbf{x}_{\text{cls}};\ \mathbf{x}_p^1 \mathbf{E};\ \mathbf{x}_p^2 \mathbf{E};\ \dots;\
# \mathbf{x}_p^P \mathbf{E}\,] + \mathbf{E}_{\text{pos}} .
# $$
#
# The positions are a 1-D list: nothing tells the model that patch 5 sits below patch 1 on a $4 \times 4$
# grid. The paper tried 2-D-aware position embeddings and found no gain over the plain 1-D table; we will
# see below what the table learns on its own. tinycore's `ViT.embed` is that equation:

# %%
print(inspect.getsource(ViT.embed))

# %% [markdown]
# Without $\mathbf{E}_{\text{pos}}$ the encoder could not tell the patches apart by where they are: as
# chapter 7 showed, attention without positions is permutation-equivariant, and the `[CLS]` token's output
# is then a function of the *set* of patches. Shuffle the patches of an image and check it on a fresh ViT,
# with and without its position table:

# %%
def shuffle_patches(images, p, order):
    """Rearrange the p x p patches of images (B, C, H, W) into `order` (row-major patch indices)."""
    B, C, H, W = images.shape
    grid = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
    grid = grid.reshape(B, -1, C, p, p)[:, order]  # (B, P, C, p, p), patches reordered
    grid = grid.reshape(B, H // p, W // p, C, p, p).permute(0, 3, 1, 4, 2, 5)  # (B, C, H/p, p, W/p, p)
    return grid.reshape(B, C, H, W)


torch.manual_seed(0)
fresh = ViT(image_size=8, patch_size=2, channels=1, num_classes=10, d_model=32, num_layers=2, num_heads=4, d_ff=64)
order = torch.randperm(16, generator=gen)
scrambled = shuffle_patches(x_test[:4], 2, order)  # (4, 1, 8, 8)
with torch.no_grad():
    print("with positions:    logits unchanged by shuffling the patches:",
          torch.allclose(fresh(scrambled), fresh(x_test[:4]), atol=1e-5))
    fresh.pos_embedding.zero_()
    print("without positions: logits unchanged by shuffling the patches:",
          torch.allclose(fresh(scrambled), fresh(x_test[:4]), atol=1e-5))

fig, axes = plt.subplots(1, 2, figsize=(4.5, 2.3))
for ax, img, title in [(axes[0], x_test[0, 0], "a digit"), (axes[1], scrambled[0, 0], "its patches shuffled")]:
    ax.imshow(img, cmap="gray_r")
    ax.set(xticks=[], yticks=[], title=title)
plt.tight_layout()
plt.show()

# %% [markdown]
# Without positions, these two images are the same input to a ViT.
#
# ## The encoder and the head
#
# The rest is the encoder of Part III. Equations (2) to (4) of the paper are pre-norm blocks with
# LayerNorm, bidirectional multi-head self-attention (MSA) and a GELU MLP, then a final LayerNorm of the
# `[CLS]` token's state, read by a linear head:
#
# $$
# \mathbf{z}'_\ell = \mathrm{MSA}(\mathrm{LN}(\mathbf{z}_{\ell-1})) + \mathbf{z}_{\ell-1}, \qquad
# \mathbf{z}_\ell = \mathrm{MLP}(\mathrm{LN}(\mathbf{z}'_\ell)) + \mathbf{z}'_\ell, \qquad \ell = 1, \dots, L,
# $$
#
# $$
# \mathbf{y} = \mathrm{LN}(\mathbf{z}_L^0), \qquad \text{logits} = \mathbf{y} W_{\text{head}}^\top + \mathbf{b}_{\text{head}} .
# $$
#
# In tinycore that is `TransformerBlock(causal=False, norm="layernorm", ffn="gelu", bias=True)`, the block of
# chapter 9 with BERT's and GPT-2's choices, and the whole forward pass is five lines:

# %%
print(inspect.getsource(ViT.forward))

# %% [markdown]
# ### tinycore's ViT equals one built from PyTorch's modules
#
# To be sure the pieces are assembled right, build the same model from PyTorch's own layers: `nn.Conv2d`
# for the patches, `nn.TransformerEncoder` with `norm_first=True` (pre-norm) and GELU for the blocks,
# `nn.LayerNorm` and `nn.Linear`. Copy tinycore's weights over by name (PyTorch's attention keeps $W_q$,
# $W_k$, $W_v$ stacked in one `in_proj_weight`, as in chapter 6), and compare the logits and every
# parameter's gradient in float64:

# %%
class TorchViT(nn.Module):
    """ViT from PyTorch's modules: Conv2d patches, [CLS], positions, nn.TransformerEncoder (pre-norm), LN, head."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.patches = nn.Conv2d(c.channels, c.d_model, kernel_size=c.patch_size, stride=c.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.pos = nn.Parameter(torch.zeros(1, c.num_patches + 1, c.d_model))
        layer = nn.TransformerEncoderLayer(c.d_model, c.num_heads, c.d_ff, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.num_classes)

    def forward(self, images):
        x = self.patches(images).flatten(2).transpose(1, 2)  # (B, D, H/p, W/p) -> (B, P, D)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos  # (B, P + 1, D)
        return self.head(self.norm(self.encoder(x)[:, 0]))  # (B, num_classes)


def copy_into_torch(ours: ViT, theirs: TorchViT) -> None:
    c = ours.config
    with torch.no_grad():
        theirs.patches.weight.copy_(ours.patch_embed.proj.weight.reshape(c.d_model, c.channels, c.patch_size, c.patch_size))
        theirs.patches.bias.copy_(ours.patch_embed.proj.bias)
        theirs.cls.copy_(ours.cls_token.reshape(1, 1, -1))
        theirs.pos.copy_(ours.pos_embedding[None])
        for block, layer in zip(ours.layers, theirs.encoder.layers):
            a = block.attn
            layer.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            layer.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            layer.self_attn.out_proj.weight.copy_(a.output_proj.weight)
            layer.self_attn.out_proj.bias.copy_(a.output_proj.bias)
            for mine, torch_name in [(block.ln1, "norm1"), (block.ln2, "norm2"), (block.ffn.w1, "linear1"), (block.ffn.w2, "linear2")]:
                getattr(layer, torch_name).weight.copy_(mine.weight)
                getattr(layer, torch_name).bias.copy_(mine.bias)
        theirs.norm.weight.copy_(ours.ln_final.weight)
        theirs.norm.bias.copy_(ours.ln_final.bias)
        theirs.head.weight.copy_(ours.head.weight)
        theirs.head.bias.copy_(ours.head.bias)


check_config = ViTConfig(image_size=8, patch_size=2, channels=1, num_classes=10, d_model=24, num_layers=2,
                         num_heads=3, d_ff=40)
torch.manual_seed(1)
ours = ViT.from_config(check_config).double()
with torch.no_grad():  # random norm gains and biases too, so that a swapped one cannot hide
    for name, param in ours.named_parameters():
        if param.ndim == 1 and "cls" not in name:
            param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=torch.float64))
theirs = TorchViT(check_config).double()
copy_into_torch(ours, theirs)

labels = y_test[:6]
loss_ours = F.cross_entropy(ours(x_test[:6].double()), labels)
loss_theirs = F.cross_entropy(theirs(x_test[:6].double()), labels)
loss_ours.backward()
loss_theirs.backward()
# Put our gradients into the PyTorch layout with the same copy function, then compare tensor by tensor.
grads_as_vit = ViT.from_config(check_config).double()
with torch.no_grad():
    for name, param in grads_as_vit.named_parameters():
        param.copy_(dict(ours.named_parameters())[name].grad)
grads_as_torch = TorchViT(check_config).double()
copy_into_torch(grads_as_vit, grads_as_torch)
worst = max((mine - param.grad).abs().max().item()
            for mine, param in zip(grads_as_torch.parameters(), theirs.parameters()))
print("parameters:", count_parameters(ours), "(tinycore),", count_parameters(theirs), "(PyTorch)")
print("loss equal to 1e-12:", abs(loss_ours.item() - loss_theirs.item()) < 1e-12)
print(f"all {len(list(theirs.parameters()))} parameter gradients equal to 1e-10:", worst < 1e-10)

# %% [markdown]
# The course's tests (`tests/test_vit.py`) go one step further and load the same weights into Hugging Face's
# `ViTForImageClassification`, built from a configuration without downloading anything: logits, attention
# maps and every gradient agree with it too.

# %% [markdown]
# ## Training a tiny ViT on the digits
#
# The paper's central finding is about data: trained on ImageNet's 1.3 million images, ViT trails a ResNet
# of similar size; pre-trained on 14 to 300 million images it overtakes it. Convolutions build in two
# assumptions about images, that nearby pixels belong together (locality) and that a pattern means the same
# thing wherever it appears (translation equivariance); a ViT has to learn both from data, which costs data.
# Our training set has 898 images. So what can a tiny ViT do with it, and how does it compare with the
# models you would reach for instead?
#
# ### Which patch size?
#
# Patches of $p = 2$ give 16 tokens of 4 pixels; $p = 4$ gives 4 tokens of 16 pixels, a quarter of the
# digit each. While writing this chapter we trained both, with the recipe below and the same CPU time
# (three seeds each): $p = 4$ scored about 97% and $p = 2$ about 95%, at twice the cost per image. With so
# few images, a token that sees a quarter of the digit at once is the better deal, and we use $p = 4$.
#
# ### The recipe
#
# - **Model**: $D = 64$, three blocks of four heads, $F = 2D$; about 100 thousand parameters.
# - **Loop**: tinycore's `train` of chapter 9: AdamW with weight decay 0.05, a linear warm-up over 50 steps to
#   a peak learning rate of $3 \times 10^{-3}$, then a cosine decay; batches of 128 images; 1,000 steps.
# - **Loss**: cross-entropy with label smoothing 0.1 {cite:p}`vaswani2017attention` (the target puts 0.9 on
#   the true class and spreads 0.1 over all ten), which keeps the model from becoming over-confident on 898
#   images it will soon know by heart.
# - **Augmentation**: every training image is drawn with a fresh small rotation (up to 10 degrees), scale
#   (up to 10%) and shift (up to half a pixel), with `tinycore.images.random_affine`. Whole-pixel shifts
#   (`random_shift`) are the classic augmentation for convolutional networks; you will see below what they
#   do to each model.

# %%
VIT = ViTConfig(image_size=8, patch_size=4, channels=1, num_classes=10, d_model=64, num_layers=3, num_heads=4, d_ff=128)
RECIPE = TrainConfig(steps=1000, lr=3e-3, warmup_steps=50, weight_decay=0.05, betas=(0.9, 0.99),
                     eval_every=100, eval_batches=2, seed=0)
BATCH_SIZE = 128
device = tinycore.get_device()
background = float(x_train.min())  # the normalised value of a blank pixel (0 on the raw scale)


def affine(xb, generator):
    """Each image rotated by up to 10 degrees, scaled by up to 10% and shifted by up to half a pixel."""
    return random_affine(xb, max_degrees=10, max_scale=0.1, max_shift=0.5, generator=generator, fill=background)


def classification_loss(model, batch):
    images, labels = batch  # (B, 1, 8, 8), (B,)
    return F.cross_entropy(model(images), labels, label_smoothing=0.1)


@torch.no_grad()
def accuracy(model, x, y):
    """The fraction of images in x classified as y, in eval mode."""
    model.eval()
    return (model(x.to(device)).argmax(-1).cpu() == y).float().mean().item()


train_batch = image_batches(x_train, y_train, BATCH_SIZE, device, augment=affine)
fig, axes = plt.subplots(1, 9, figsize=(10, 1.5))
axes[0].imshow(x_train[0, 0], cmap="gray_r")
axes[0].set_title("original", fontsize=9)
same_digit = image_batches(x_train[:1].expand(8, -1, -1, -1), y_train[:1].expand(8), 8, "cpu", augment=affine)
for ax, img in zip(axes[1:], same_digit(torch.Generator().manual_seed(4))[0]):
    ax.imshow(img[0], cmap="gray_r")
for ax in axes:
    ax.set(xticks=[], yticks=[])
fig.suptitle("eight draws of the augmentation for one training digit", y=1.05, fontsize=10)
plt.show()

# %% [markdown]
# Now train. The loop prints nothing here; expect about 20 to 30 seconds on a laptop CPU.

# %%
torch.manual_seed(0)
vit = ViT.from_config(VIT)
print(f"ViT: {VIT.num_patches} patches of {VIT.patch_size}x{VIT.patch_size} pixels, {count_parameters(vit):,} parameters")
start = time.perf_counter()
vit_history = train(vit, classification_loss, train_batch, RECIPE, device)
seconds = {"ViT": time.perf_counter() - start}
vit_accuracy = accuracy(vit, x_test, y_test)
print(f"training loss: {vit_history.eval_train_loss[0]:.2f} after {vit_history.eval_step[0]} steps, "
      f"{vit_history.eval_train_loss[-1]:.2f} at the end")
print(f"ViT test accuracy: {100 * vit_accuracy:.1f}%   (train: {100 * accuracy(vit, x_train, y_train):.1f}%)")

# %% [markdown]
# ### The baselines, trained the same way
#
# A fair comparison trains the alternatives with the same loop, the same number of steps and batches, the
# same augmentation and the same loss; only the model changes. The three a reader would reach for:
#
# - the **support-vector machine** of scikit-learn's gallery, `SVC(gamma=0.001)` on the raw pixels (it has
#   no training loop, and takes a few milliseconds);
# - an **MLP** on the 64 pixels, one hidden layer of 256 GELU units (the gallery's neighbour example,
#   scikit-learn's `MLPClassifier` with its defaults, scores 92.7% on this split);
# - a small **convolutional network**: three $3 \times 3$ convolutions of 16, 32 and 32 channels with two
#   $2 \times 2$ max-poolings, then a linear layer: a LeNet in miniature.

# %%
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

raw_train = (x_train * data.std + data.mean).flatten(1).numpy()  # (898, 64): pixel values 0..16, as in the gallery
raw_test = (x_test * data.std + data.mean).flatten(1).numpy()  # (899, 64)
svc = SVC(gamma=0.001).fit(raw_train, y_train.numpy())
sklearn_mlp = MLPClassifier(random_state=0).fit(raw_train, y_train.numpy())
results = {
    "SVC (scikit-learn gallery)": (svc.predict(raw_test) == y_test.numpy()).mean(),
    "MLP (scikit-learn defaults)": (sklearn_mlp.predict(raw_test) == y_test.numpy()).mean(),
}


def make_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 10))  # (B, 1, 8, 8) -> (B, 10)


def make_cnn():
    return nn.Sequential(  # (B, 1, 8, 8) -> (B, 10)
        nn.Conv2d(1, 16, 3, padding=1), nn.GELU(),  # (B, 16, 8, 8)
        nn.Conv2d(16, 32, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),  # (B, 32, 4, 4)
        nn.Conv2d(32, 32, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),  # (B, 32, 2, 2)
        nn.Flatten(), nn.Linear(32 * 2 * 2, 10),  # (B, 128) -> (B, 10)
    )


models = {"ViT": vit}
for name, make in [("MLP", make_mlp), ("CNN", make_cnn)]:
    torch.manual_seed(0)
    models[name] = make()
    start = time.perf_counter()
    train(models[name], classification_loss, train_batch, RECIPE, device)
    seconds[name] = time.perf_counter() - start
results["MLP, our recipe"] = accuracy(models["MLP"], x_test, y_test)
results["CNN, our recipe"] = accuracy(models["CNN"], x_test, y_test)
results["ViT, our recipe"] = vit_accuracy
parameters = {"MLP, our recipe": count_parameters(models["MLP"]), "CNN, our recipe": count_parameters(models["CNN"]),
              "ViT, our recipe": count_parameters(vit)}
print(f"{'model':28s} {'test accuracy':>13s} {'parameters':>11s}")
for name, acc in results.items():
    print(f"{name:28s} {100 * acc:12.1f}% {parameters.get(name, ''):>11}")

# %% [markdown]
# How long each took on this machine (your numbers will differ; the SVC is too quick to matter):

# %% tags=["nbval-ignore-output"]
print(", ".join(f"{name}: {s:.1f} s" for name, s in seconds.items()), f"({torch.get_num_threads()} threads)")

# %% [markdown]
# ## What the ViT learned
#
# ### Where the `[CLS]` token looks
#
# The classifier sees only the `[CLS]` token's final state, and `[CLS]` has no pixels: everything it knows
# it gathered by attention. `ViT.attention_maps` returns every layer's attention weights, shape
# $(L, B, H, P + 1, P + 1)$ with `[CLS]` at index 0; row 0 of each map says how `[CLS]` split its attention
# between itself and the four patches. Here it is for a few test digits, in every head of the last layer,
# drawn over the image (brighter = more attention; the number is the weight on that patch):

# %%
GRID = VIT.image_size // VIT.patch_size  # 2 patches per side


def cls_attention(model, images, layer):
    """(N, 1, 8, 8) -> (N, H, GRID, GRID): the [CLS] token's attention to each patch in `layer`."""
    maps = model.attention_maps(images.to(device)).cpu()  # (L, N, H, P + 1, P + 1)
    return maps[layer, :, :, 0, 1:].reshape(len(images), -1, GRID, GRID)  # (N, H, P) -> (N, H, GRID, GRID)


def draw_attention(ax, image, weights, title=None):
    """A digit in grey with a translucent map of per-patch weights (GRID, GRID) over it."""
    ax.imshow(image, cmap="gray_r", extent=(0, 8, 8, 0))
    ax.imshow(weights, cmap="magma", alpha=0.55, vmin=0, vmax=1, extent=(0, 8, 8, 0))
    for r in range(GRID):
        for c in range(GRID):
            s = VIT.patch_size
            ax.text(c * s + s / 2, r * s + s / 2, f"{weights[r, c]:.2f}", ha="center", va="center", fontsize=8,
                    color="w" if weights[r, c] < 0.6 else "k")
    ax.set(xticks=[], yticks=[])
    if title:
        ax.set_title(title, fontsize=9)


shown = [0, 1, 2, 3]  # the first four test images
last = VIT.num_layers - 1
weights = cls_attention(vit, x_test[shown], last)  # (4, H, GRID, GRID)
fig, axes = plt.subplots(len(shown), VIT.num_heads + 1, figsize=(8, 8))
for row, i in enumerate(shown):
    pred = int(vit(x_test[i:i + 1].to(device)).argmax())
    axes[row, 0].imshow(x_test[i, 0], cmap="gray_r")
    axes[row, 0].set(xticks=[], yticks=[], title=f"label {int(y_test[i])}, predicted {pred}")
    for h in range(VIT.num_heads):
        draw_attention(axes[row, h + 1], x_test[i, 0], weights[row, h], f"layer {last}, head {h}" if row == 0 else None)
plt.tight_layout()
plt.show()

# %% [markdown]
# Averaged over all 899 test images, each head's attention from `[CLS]` splits like this (rows: layer and head;
# columns: `[CLS]` itself, then the patches top-left, top-right, bottom-left, bottom-right):

# %%
with torch.no_grad():
    all_maps = vit.attention_maps(x_test.to(device)).cpu()  # (L, 899, H, P + 1, P + 1)
mean_cls = all_maps[:, :, :, 0, :].mean(dim=1)  # (L, H, P + 1): the average [CLS] row
fig, ax = plt.subplots(figsize=(5, 4.5))
row_labels = [f"layer {l}, head {h}" for l in range(VIT.num_layers) for h in range(VIT.num_heads)]
heatmap(mean_cls.reshape(-1, VIT.num_patches + 1), ax, row_labels=row_labels,
        col_labels=["[CLS]", "top-left", "top-right", "bottom-left", "bottom-right"], cmap="magma", vmin=0, vmax=1)
ax.set_title("mean attention of [CLS], test set", fontsize=10)
plt.xticks(rotation=30)
plt.tight_layout()
plt.show()
print("largest mean weight of any head on one patch:", f"{mean_cls[..., 1:].max():.2f}")

# %% [markdown]
# ### Does it use the positions?
#
# A ViT is handed positions, but nothing forces it to use them. Two ways to find out: shuffle the four
# patches of every test image (a different random order per image), and remove the position table altogether.

# %%
def shuffled_test_accuracy(model, generator):
    orders = [torch.randperm(VIT.num_patches, generator=generator) for _ in range(len(x_test))]
    scrambled = torch.cat([shuffle_patches(x_test[i:i + 1], VIT.patch_size, order) for i, order in enumerate(orders)])
    return accuracy(model, scrambled, y_test)


saved = vit.pos_embedding.detach().clone()
print(f"test accuracy:                                   {100 * vit_accuracy:.1f}%")
print(f"patches shuffled:                                {100 * shuffled_test_accuracy(vit, torch.Generator().manual_seed(5)):.1f}%")
with torch.no_grad():
    vit.pos_embedding.zero_()
print(f"position table removed:                          {100 * accuracy(vit, x_test, y_test):.1f}%")
print(f"position table removed, patches shuffled:        {100 * shuffled_test_accuracy(vit, torch.Generator().manual_seed(5)):.1f}%")
with torch.no_grad():
    vit.pos_embedding.copy_(saved)

# %% [markdown]
# ### The position embeddings' similarity
#
# The paper's Figure 7 shows, for each patch position, the cosine similarity of its position embedding with
# every other, laid out on the image grid: the model learned that nearby patches are related, rows and
# columns included, from a 1-D list of positions. Our grid is only $2 \times 2$, but you can ask the same
# question: here are the four patch positions, each with its similarity to all four, before and after
# training.

# %%
def position_similarity(pos_embedding):
    """(P + 1, D) -> (P, P): cosine similarity between the patches' position embeddings ([CLS] left out)."""
    patches_pos = F.normalize(pos_embedding[1:], dim=-1)  # (P, D), unit rows
    return patches_pos @ patches_pos.T  # (P, D) @ (D, P) -> (P, P)


torch.manual_seed(0)
similarity_init = position_similarity(ViT.from_config(VIT).pos_embedding.detach())  # the same seed's initial table
similarity = position_similarity(vit.pos_embedding.detach().cpu())
fig, axes = plt.subplots(2, 2 * GRID, figsize=(9, 4.4))
for k, (sim, when) in enumerate([(similarity_init, "initial"), (similarity, "trained")]):
    for idx in range(VIT.num_patches):
        ax = axes[idx // GRID, k * GRID + idx % GRID]
        ax.imshow(sim[idx].reshape(GRID, GRID), cmap="RdBu_r", vmin=-1, vmax=1)
        for j in range(VIT.num_patches):
            ax.text(j % GRID, j // GRID, f"{sim[idx, j]:.2f}", ha="center", va="center", fontsize=8)
        ax.set(xticks=[], yticks=[])
        ax.set_title(f"{when}: patch {idx}", fontsize=9)
plt.tight_layout()
plt.show()
print("cosine similarity of the trained position embeddings (patches 0-3: top-left, top-right, bottom-left, bottom-right):")
print(similarity.numpy().round(2))

# %% [markdown]
# ## Explore: what the `[CLS]` token attends to
#
# Pick a test digit, a layer and a head (or the mean over heads), and see where `[CLS]` looks and what the
# model predicts. The static figure shows the defaults: the first test digit, the last layer, the mean over
# the heads. Try digits the model gets wrong: the list printed below the figure gives their indices.

# %%
with torch.no_grad():
    vit.eval()
    test_probs = vit(x_test.to(device)).softmax(-1).cpu()  # (899, 10)
wrong = (test_probs.argmax(-1) != y_test).nonzero().flatten().tolist()
HEAD_OPTIONS = ["mean over heads"] + [f"head {h}" for h in range(VIT.num_heads)]


def draw_explorer(index, layer, head, axes):
    maps = all_maps[layer, index, :, 0, 1:].reshape(-1, GRID, GRID)  # (H, GRID, GRID)
    weights = maps.mean(0) if head == HEAD_OPTIONS[0] else maps[HEAD_OPTIONS.index(head) - 1]
    draw_attention(axes[0], x_test[index, 0], weights, f"test digit {index}: [CLS] attention, layer {layer}, {head}")
    axes[1].bar(range(10), test_probs[index], color=["C2" if c == int(y_test[index]) else "C0" for c in range(10)])
    axes[1].set(xticks=range(10), ylim=(0, 1), xlabel="class (green: the true label)", ylabel="probability",
                title=f"label {int(y_test[index])}, predicted {int(test_probs[index].argmax())}")


fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
draw_explorer(0, VIT.num_layers - 1, HEAD_OPTIONS[0], axes)
plt.tight_layout()
plt.show()
print(f"{len(wrong)} test digits misclassified, e.g. indices {wrong[:12]}")

# %% tags=["nbval-ignore-output"]
def explore(index=0, layer=VIT.num_layers - 1, head=HEAD_OPTIONS[0]):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    draw_explorer(index, layer, head, axes)
    plt.tight_layout()
    plt.show()


_ = interact(
    explore,
    index=IntSlider(value=0, min=0, max=len(x_test) - 1, description="test digit"),
    layer=IntSlider(value=VIT.num_layers - 1, min=0, max=VIT.num_layers - 1, description="layer"),
    head=Dropdown(options=HEAD_OPTIONS, value=HEAD_OPTIONS[0], description="head"),
)

# %% [markdown]
# ## Exercises
#
# ```{exercise-start} Cut images into patches
# :label: ex-vit-patchify
# ```
# Write `patchify(images, patch_size)`, which cuts a batch of images into non-overlapping
# `patch_size` x `patch_size` patches and flattens each one: patches numbered row by row (left to right, then
# down), and the values of a patch in (channel, row, column) order, the order in which a `Conv2d` weight
# $(D, C, p, p)$ flattens.
#
# - Shapes: `images` $(B, C, H, W)$ with $H$ and $W$ divisible by $p$ -> $(B, P, C p^2)$ with
#   $P = (H/p)(W/p)$. The checker tries non-square images with 1 to 3 channels, and gradients.
# - No loops: one `reshape`, one `permute`, one more `reshape`.
#
# Hint: index $(h, w)$ of the image is (patch row $h // p$, row in patch $h \% p$), and likewise for $w$, so
# `images.reshape(B, C, H // p, p, W // p, p)` names all six axes. Hint: after `permute`, the tensor is not
# contiguous: use `reshape`, not `view`.

# %%
def patchify(images, patch_size):
    raise NotImplementedError("Exercise: implement patchify")


# %% tags=["raises-exception"]
checks.patchify(patchify)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-vit-patchify
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def patchify(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    grid = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, H/p, p1, W/p, p2)
    grid = grid.permute(0, 2, 4, 1, 3, 5)  # -> (B, H/p, W/p, C, p1, p2)
    return grid.reshape(B, (H // p) * (W // p), C * p * p)  # -> (B, P, C p p)


checks.patchify(patchify)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} A patch embedding from a convolution
# :label: ex-vit-patch-embed-from-conv
# ```
# Write `patch_embed_from_conv(conv)`: given a `nn.Conv2d(C, D, kernel_size=p, stride=p)` (with a bias),
# return an `nn.Linear(C * p * p, D)` that computes the same thing on the patches, so that
# `linear(patchify(x, p))` equals `conv(x).flatten(2).transpose(1, 2)`.
#
# - Shapes: `conv.weight` is $(D, C, p, p)$; the `Linear`'s weight must be $(D, C p^2)$ (out, in). The
#   checker tries three convolutions with different $C$, $D$ and $p$, and must find the convolution unchanged.
# - Copy the values inside `with torch.no_grad():`, with `linear.weight.copy_(...)`.
#
# Hint: patchify flattens a patch in (channel, row, column) order, which is the order of the weight's last
# three axes. Hint: the bias is part of the convolution too.

# %%
def patch_embed_from_conv(conv):
    raise NotImplementedError("Exercise: implement patch_embed_from_conv")


# %% tags=["raises-exception"]
checks.patch_embed_from_conv(patch_embed_from_conv)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-vit-patch-embed-from-conv
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def patch_embed_from_conv(conv):
    D, C, p, _ = conv.weight.shape
    linear = nn.Linear(C * p * p, D)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(D, C * p * p))  # (D, C, p, p) -> (D, C p p)
        linear.bias.copy_(conv.bias)
    return linear


checks.patch_embed_from_conv(patch_embed_from_conv)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} The encoder's input
# :label: ex-vit-prepend-cls
# ```
# Write `prepend_cls(tokens, cls_token, pos_embedding)`, equation (1) of the paper after the patch
# embedding: put the `[CLS]` vector in front of every image's patch tokens, then add the position table.
#
# - Shapes: `tokens` $(B, P, D)$, `cls_token` $(D,)$, `pos_embedding` $(P + 1, D)$ -> $(B, P + 1, D)$, with
#   `[CLS]` at position 0 taking row 0 of the table. The checker compares values and gradients for all
#   three inputs.
#
# Hint: `cls_token.expand(B, 1, D)` makes a $(B, 1, D)$ view without copying. Hint: `torch.cat(..., dim=1)`
# joins along the token axis, and a $(P + 1, D)$ table broadcasts over the batch.

# %%
def prepend_cls(tokens, cls_token, pos_embedding):
    raise NotImplementedError("Exercise: implement prepend_cls")


# %% tags=["raises-exception"]
checks.prepend_cls(prepend_cls)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-vit-prepend-cls
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def prepend_cls(tokens, cls_token, pos_embedding):
    B, P, D = tokens.shape
    cls = cls_token.expand(B, 1, D)  # (D,) -> (B, 1, D)
    return torch.cat([cls, tokens], dim=1) + pos_embedding  # (B, P + 1, D) + (P + 1, D)


checks.prepend_cls(prepend_cls)

# %% [markdown]
# ```{solution-end}
# ```

# %% [markdown]
# ## Summary
#
# - ViT reads an image as a sequence: $P = HW/p^2$ non-overlapping $p \times p$ patches, each flattened in
#   (channel, row, column) order to a vector of $C p^2$ numbers. A `reshape`, a `permute` and a `reshape` do it.
# - The patch embedding, one `Linear` applied to every patch, is exactly a `Conv2d` with kernel size and stride
#   $p$ (its weight $(D, C, p, p)$ reshaped to $(D, C p^2)$): equal in values and gradients.
# - A learned `[CLS]` vector goes in front and a learned position table $(P + 1, D)$ is added. Without the
#   table, a ViT cannot tell an image from one with its patches shuffled.
# - The rest is the pre-norm encoder of Part III; tinycore's `ViT` equals a model built from PyTorch's
#   `nn.Conv2d` and `nn.TransformerEncoder`, and (in the tests) Hugging Face's `ViTForImageClassification`.
# - On 898 handwritten digits, the tiny ViT (patches of 4 x 4, 100 thousand parameters) reached about 97%
#   on the harder second half in about 20 seconds of CPU time, beside the gallery's SVC at 96.9% and an MLP
#   trained the same way; a small CNN, built for images, did better still. ViT's lack of built-in locality and
#   translation equivariance costs data, the paper's own finding at a much larger scale.
#
# ## References
#
# - The Vision Transformer: {cite:t}`dosovitskiy2021image`.
# - The transformer encoder and label smoothing: {cite:t}`vaswani2017attention`; the `[CLS]` token:
#   {cite:t}`devlin2019bert`.
# - AdamW: {cite:t}`loshchilov2019decoupled`; GELU: {cite:t}`hendrycks2016gelu`; LayerNorm: {cite:t}`ba2016layer`.
# - Pre-norm blocks: {cite:t}`xiong2020layer`.
# - Windowed attention for images, the next chapter: {cite:t}`liu2021swin`.
# - The digits are the UCI "Optical Recognition of Handwritten Digits" set of E. Alpaydin and C. Kaynak (1998),
#   as shipped with scikit-learn; the SVC baseline is scikit-learn's gallery example "Recognizing hand-written
#   digits".
