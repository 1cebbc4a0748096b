"""What a model adapter provides: one small interface that every family implements.

The explainer and the methods never name a model attribute. Everything they need from a model
comes through an adapter: how an image becomes the model's input (and the geometry to map a
heatmap back), the text embeddings, the layers and their named sublayers (in the family's own
names), how a captured activation is laid out as tokens (prefix tokens first, then the token
grid), where q, k, v and the attention output are read for the attention methods, the image
embedding, the score, and which sublayers cannot reach the score at all.

Families: Hugging Face CLIP and SigLIP (``clipcam.models.hf_clip``), SigLIP 2's NaFlex variant
(``clipcam.models.siglip2``), open_clip's ViTs, ResNets and timm-trunk towers
(``clipcam.models.open_clip``). Each adapter class also declares, as data, what the family
registry (``clipcam.models.registry``) needs: the library and models it matches, its sublayers
(the default and the MLP-wide one), and its short names with their starting settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, ContextManager, Sequence

import numpy as np
import torch
from PIL import Image

from ..cache import LockedLRU
from ..constants import check_choice
from ..geometry import CropGeometry
from ..precision import FP32, Precision
from .layers import check_layer
from .pool import PoolView

#: How many prompt lists' text embeddings each loaded model keeps.
TEXT_CACHE_SIZE = 256

#: What an adapter can offer a method. "sublayer": activations that can be laid out on the token
#: grid; "attention": q, k, v and the attention output of every layer; "class_token": a token
#: that the image embedding is read from, whose attention row is the map (Chefer, Grad-ECLIP);
#: "layer_readout": any layer's tokens can be read as an image embedding (LeGrad); "dense": the last
#: block runs from ``block_views`` and every token reads out through ``token_readout`` (SCLIP,
#: ClearCLIP, NACLIP); "value_path": MaskCLIP's reading, the last block's or ``value_pool``'s values;
#: "parallel_path": BlockViews and token_readout, so a changed path can run beside the model's own (GEM);
#: "surgery_path": what CLIP Surgery's authors change, CLIP's last blocks or a ResNet's attention pool.
CAPABILITIES: dict[str, str] = {
    "sublayer": "activations on a token grid",
    "attention": "self-attention layers whose queries, keys and values clipcam can read",
    "class_token": "a class token that the image embedding is read from",
    "layer_readout": "a way to read any layer's tokens as an image embedding",
    "dense": "a last transformer block that clipcam can run changed, with every token read out as an embedding",
    "value_path": "a last attention (a ViT's last block or an attention pool) whose value path reads out every position",
    "parallel_path": "patch tokens that read out as embeddings",
    "surgery_path": "the v–v paths that CLIP Surgery's authors define for CLIP ViTs and ResNets",
}


@dataclass(frozen=True)
class Start:
    """A short-named model's best starting settings in the app, measured on that model.

    ``from_end``: the starting layer counted back from the last (0 = the last layer); ``cam_layer``:
    the layer a CAM method starts on when a person switches to one (None: the model's default);
    ``evidence``: the titles of the BENCHMARKS.md sections whose tables these settings come from.
    """

    from_end: int
    sublayer: str
    target: str
    method: str
    cam_layer: int | None = None
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShortName:
    """A name a person can type for a known model, and what is known about it without loading it:
    its source (a hub id, an open_clip name or a folder), vision layers, a description for people,
    the vision widths Score-CAM's cost is counted in (0: read them from the model), and its
    starting settings in the app (None: the family's defaults)."""

    name: str
    source: str
    layers: int
    description: str
    width: int = 0
    mlp_width: int = 0
    start: Start | None = None


@dataclass(frozen=True)
class AttentionSite:
    """Where one self-attention layer's pieces are read.

    ``reads``' outputs are recorded (detached) and ``split`` turns them into the queries, keys and
    values of image 0, each (T, D), heads concatenated. ``out`` is the module whose output is the
    attention block's output after its output projection (``out_weight`` (D, D), ``out_bias``); the gradient is
    taken there and mapped back onto the attention probabilities (clipcam.methods.attention).
    """

    reads: tuple[torch.nn.Module, ...]
    split: Callable[[Sequence[torch.Tensor]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    out: torch.nn.Module
    out_weight: torch.Tensor
    heads: int
    out_bias: torch.Tensor | None = None


@dataclass(frozen=True)
class BlockView:
    """One pre-norm transformer block of a vision tower, as the pieces a method needs to run it
    again in its own way (dense maps that change the last blocks' attention, the decomposition of
    the embedding into the blocks' terms). The block computes, on tokens x (B, T, D):

        y = x + ls_1(out_proj(attention(*qkv(ln_1(x)))))
        z = y + ls_2(mlp(ln_2(y)))

    where ``qkv`` gives q, k and v (B, T, D) each, heads concatenated (``heads`` of them, scaled
    by head_dim ** -0.5 in the attention), ``out_proj`` is the attention's output projection
    (an nn.Linear: weight (D, D), bias (D,)), and ``ls_1``, ``ls_2`` are the layer scales
    (identity where the family has none).
    """

    ln_1: Callable[[torch.Tensor], torch.Tensor]
    qkv: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    heads: int
    out_proj: torch.nn.Linear
    ln_2: Callable[[torch.Tensor], torch.Tensor]
    mlp: Callable[[torch.Tensor], torch.Tensor]
    module: torch.nn.Module  # the block itself: a hook on it sees its input and output
    ls_1: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    ls_2: Callable[[torch.Tensor], torch.Tensor] = lambda x: x


@dataclass(frozen=True)
class ValuePool:
    """An attention pool that makes the image embedding (a ResNet's ``attnpool``), read MaskCLIP's
    way: ``values`` takes the pool's input (what a hook on ``module`` sees) and gives every position
    through the value path alone, (B, N, P) on the grid, not normalised."""

    module: torch.nn.Module
    values: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TextInputs:
    """K prompts as the text encoder reads them, and what word relevance needs to read it back.

    ids (K, T): the token ids, exactly as ``encode_text`` tokenizes them (word relevance runs
    ``encode_text`` itself, so both must tokenize alike); mask (K, T, T) bool:
    True where query i may attend to key j (causal and padding masks, all True for a
    bidirectional encoder); pooled (K,): the position the text embedding is read from; keep
    (K, T) bool: the prompt's own tokens (no start, end or padding tokens); pieces: per prompt,
    the tokenizer's strings of the kept tokens, in order (BPE pieces with their word markers).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    keep: torch.Tensor
    pieces: tuple[tuple[str, ...], ...]


def special_free(tokenizer, ids: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, tuple[tuple[str, ...], ...]]:
    """For a Hugging Face tokenizer: which positions of ids (K, T) are the prompt's own tokens
    (present, and not a start, end or padding token), and their token strings per prompt."""
    special = torch.tensor([tokenizer.get_special_tokens_mask(row.tolist(), already_has_special_tokens=True)
                            for row in ids], dtype=torch.bool)  # (K, T)
    keep = present & ~special
    pieces = tuple(tuple(tokenizer.convert_ids_to_tokens(row[k].tolist())) for row, k in zip(ids, keep))
    return keep, pieces


class ModelAdapter:
    """One loaded, frozen model of some family, seen the way clipcam's methods need it.

    Subclasses set the class attributes and implement the methods that raise NotImplementedError.
    Instances are immutable after loading and safe to share between threads; the text cache is
    lock-guarded.
    """

    #: Short family id ("hf-clip", "siglip", "open_clip-vit", "open_clip-resnet", "open_clip-timm-vit",
    #: "open_clip-convnext").
    family: ClassVar[str] = ""
    #: The family for people: "CLIP (Hugging Face)".
    family_label: ClassVar[str] = ""
    #: What the family offers methods (keys of CAPABILITIES).
    capabilities: ClassVar[frozenset[str]] = frozenset({"sublayer"})
    #: "softmax": the probabilities compete across the prompts (CLIP); "sigmoid": each prompt's own
    #: match probability, independent of the others (SigLIP).
    prob_kind: ClassVar[str] = "softmax"
    #: What a person calls one step of the slider: "layer" (a transformer block) or "stage".
    layer_noun: ClassVar[str] = "layer"
    #: The named sublayers of one layer that can be explained, in forward order, in the family's names.
    sublayers: ClassVar[tuple[str, ...]] = ()
    #: Where the Grad-CAM family starts: the MLP's first projection (the reference notebook's fc1).
    default_sublayer: ClassVar[str] = ""
    #: The sublayers as wide as the MLP's hidden layer (``mlp_width`` channels; every other sublayer
    #: has ``width``): Score-CAM runs one forward per channel, so its cost is counted in them.
    wide_sublayers: ClassVar[tuple[str, ...]] = ()
    #: The library that loads the family's models: "transformers" or "open_clip".
    library: ClassVar[str] = ""
    #: Short names of known models of this family, in the order the app lists them.
    short_names: ClassVar[tuple[ShortName, ...]] = ()
    #: How the model computes (clipcam.precision); load_model sets it, float32 unless asked otherwise.
    precision: Precision = FP32

    @classmethod
    def matches(cls, source: str, config: Any) -> bool:
        """Whether this family explains a model of ``library``: ``config`` is the transformers
        config (transformers families) or the built model's vision tower (open_clip families)."""
        return False

    def __init__(self, name: str, source: str, model: torch.nn.Module, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.name = name  # what the caller asked for ("base", a hub id or a path)
        self.source = source  # where it was loaded from
        self.model = model
        self.device = device
        self.dtype = dtype
        #: prompt tuple → (unit-norm text embeddings (K, P), notes)
        self.text_cache: LockedLRU = LockedLRU(TEXT_CACHE_SIZE)

    def forward_context(self) -> ContextManager:
        """The context the model's own forward runs in (autocast for bfloat16). Passes enter it around
        the model's forward only, so that what a method computes from the activations stays float32."""
        return self.precision.forward(self.device)

    # ------------------------------------------------------------------ layers
    @property
    def num_layers(self) -> int:
        """How many layers (blocks or stages) the slider offers, numbered 1..num_layers."""
        raise NotImplementedError

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the token grid that the maps live on (of the default sublayer's layer
        for families whose grid changes with depth; see ``grid_at``)."""
        raise NotImplementedError

    def grid_at(self, layer: int) -> tuple[int, int]:
        """(rows, cols) of layer ``layer``'s token grid; the same at every layer of a ViT."""
        return self.grid

    @property
    def prefix(self) -> int:
        """How many tokens come before the grid (1 for a class token, 0 for SigLIP)."""
        raise NotImplementedError

    @property
    def default_layer(self) -> int:
        """The layer the library starts on when none is given: the second-to-last block (as the
        reference notebook), the last stage for ResNets."""
        return max(1, self.num_layers - 1)

    def check_layer(self, layer: object) -> int:
        """``layer`` as a valid 1-based layer number, else a ValueError naming the range."""
        return check_layer(layer, self.num_layers, self.layer_noun)

    def check_sublayer(self, sublayer: str) -> str:
        """``sublayer`` if this family has it, else a ValueError naming the family's sublayers."""
        return check_choice(sublayer, self.sublayers, "sublayer")

    def module(self, layer: int, sublayer: str) -> torch.nn.Module:
        """The module whose output is explained for a 1-based ``layer`` and a ``sublayer`` name."""
        raise NotImplementedError

    def block_module(self, blocks: Sequence[torch.nn.Module], layer: int, sublayer: str) -> torch.nn.Module:
        """For transformer families: layer ``layer``'s block itself ("block"), or its submodule named
        ``sublayer`` in the family's own names."""
        block = blocks[self.check_layer(layer) - 1]
        return block if self.check_sublayer(sublayer) == "block" else block.get_submodule(sublayer)

    def blocks(self) -> Sequence[torch.nn.Module] | None:
        """The vision tower's blocks in forward order, when each block's output is the next one's
        hidden state and the image embedding follows from the last block's output alone; the
        explainer then backpropagates one block at a time over many layers (clipcam.blockwise).
        None (the default): always one backward through the whole graph."""
        return None

    def channels(self, sublayer: str) -> int:
        """Width of a sublayer's output (how many masked forwards Score-CAM runs per layer)."""
        raise NotImplementedError

    def tokens(self, output: torch.Tensor) -> torch.Tensor:
        """A captured output as tokens (B, T, D): ``prefix`` tokens first, then the grid row by row,
        then any padding (SigLIP 2's NaFlex pads every image's patches to one count), which the
        explainer drops before a method sees the tokens. Transformers already are; convolutional
        stages override this."""
        return output

    def dead_reason(self, layer: int, sublayer: str) -> str | None:
        """Why this (layer, sublayer) cannot influence the image embedding, or None when it can."""
        return None

    def class_token_dead_reason(self, layer: int, sublayer: str, alive: Sequence[str],
                                token: str = "class token that the image embedding is read from") -> str | None:
        """The dead rule of every class-token readout: in the last layer, patch tokens reach the
        class token only through its attention's keys and values, so every sublayer but ``alive``
        (those that feed them) has exactly zero gradient on the patches."""
        if layer != self.num_layers or sublayer in alive:
            return None
        choices = alive[0] if len(alive) == 1 else ", ".join(alive[:-1]) + " or " + alive[-1]
        return (f"In the last layer ({layer}) the patch tokens of {sublayer} never reach the {token}, so their "
                f"gradient is exactly zero and Grad-CAM has nothing to show. Pick an earlier layer, or {choices}.")

    # ------------------------------------------------------------------ attention
    def attention_sites(self, start: int) -> list[AttentionSite]:
        """The self-attention layers from 1-based ``start`` to the last, in forward order."""
        raise NotImplementedError

    def layer_features(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """LeGrad's reading of one layer's tokens (1, T, D) as an image embedding (1, P), and the
        attention probabilities the family's authors differentiate (None: the layer's own)."""
        raise NotImplementedError

    def block_views(self, start: int) -> list[BlockView]:
        """The vision tower's blocks from 1-based ``start`` to the last, in forward order, as
        BlockViews (ViTs only; other families raise ValueError with one sentence)."""
        raise ValueError(f"{self.family_label} models have no transformer blocks clipcam can run piece by piece.")

    def token_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last block's tokens (B, T, D) each read out as an image embedding would be: (B, T, P),
        not normalised (CLIP: the final layer norm and the projection, applied to every token).
        Families whose embedding is not read from one token raise ValueError with one sentence."""
        raise ValueError(f"{self.family_label} models do not read their embedding from one token, so a token "
                         "cannot be read out on its own.")

    def dense_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last block's tokens (B, T, D) each read out as the dense methods read them, (B, T, P):
        ``token_readout`` where the family reads its embedding from one token."""
        return self.token_readout(hidden)

    def value_pool(self) -> ValuePool:
        """The attention pool read through its value path (MaskCLIP on ResNets); families whose
        embedding is not made by such a pool raise ValueError with one sentence."""
        raise ValueError(f"{self.family_label} models have no attention pool whose values clipcam can read.")

    def attention_pool(self) -> PoolView:
        """A ResNet CLIP's attention pool as a PoolView (other families raise ValueError with one sentence)."""
        raise ValueError(f"{self.family_label} models have no attention pool that clipcam can run piece by piece.")

    # ------------------------------------------------------------------ inputs
    def preprocess(self, rgb: Image.Image) -> torch.Tensor:
        """The model's input for an RGB image: (1, 3, S, S) on the model's device and dtype (a family
        whose input is more than pixels returns its own frozen input object, see ``mask_inputs``)."""
        raise NotImplementedError

    def input_size(self, inputs: torch.Tensor) -> tuple[int, int]:
        """(H, W) of the image that one input shows the model: where Score-CAM's masks are made."""
        return tuple(inputs.shape[-2:])

    def mask_inputs(self, inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """One image's input multiplied by each of B masks (B, 1, H, W) in [0, 1] at ``input_size``:
        B inputs, the masked images that Score-CAM scores (as pytorch-grad-cam's input × mask)."""
        return (inputs.float() * masks).to(inputs.dtype)  # (B, 3, H, W)

    def geometry(self, image_size: tuple[int, int], layer: int | None = None) -> CropGeometry:
        """How an image of ``image_size`` (W, H) became the input, seen as the token grid."""
        raise NotImplementedError

    def token_lengths(self, prompts: Sequence[str]) -> list[int]:
        """How many tokens each prompt takes, before truncation."""
        raise NotImplementedError

    @property
    def context_length(self) -> int:
        """The most tokens the text encoder reads."""
        raise NotImplementedError

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings (K, P), not normalised, truncated to ``context_length``."""
        raise NotImplementedError

    def text_embeddings(self, prompts: Sequence[str]) -> tuple[torch.Tensor, tuple[str, ...]]:
        """Unit-norm text embeddings (K, P), cached per prompt list, and notes on truncation."""
        key = tuple(prompts)
        cached = self.text_cache.get(key)
        if cached is not None:
            return cached
        max_len = self.context_length
        notes = tuple(
            f"Prompt {i + 1} is {n} tokens long; the model reads at most {max_len}, so only its start was used."
            for i, n in enumerate(self.token_lengths(key)) if n > max_len
        )
        # float32 whatever the precision: computed once per prompt list, and a method that runs in float32
        # on a bfloat16 model (Method.float32) then gives float32's maps exactly
        with torch.no_grad():  # not inference_mode: these tensors enter the autograd graph later
            emb = self.encode_text(key).float()  # (K, P)
            emb = emb / emb.pow(2).sum(dim=-1, keepdim=True).sqrt()
        self.text_cache.put(key, (emb, notes))
        return emb, notes

    # ------------------------------------------------------------------ scores
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image embeddings (B, P) for inputs (B, 3, S, S) (or the family's input object), not normalised."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        """The learned temperature, already exponentiated (a scalar tensor)."""
        raise NotImplementedError

    @property
    def logit_bias(self) -> torch.Tensor | None:
        """SigLIP's learned bias, None for CLIP."""
        return None

    def logits(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Image embeddings (B, P) and unit-norm text embeddings (K, P) → the model's logits (B, K):
        scale × cosine (+ bias for SigLIP), exactly as the model's own forward computes them."""
        features, text = features.float(), text.float()  # scores in float32 whatever the precision
        image = features / features.pow(2).sum(dim=-1, keepdim=True).sqrt()
        out = (text @ image.T * self.logit_scale).T  # (B, K)
        bias = self.logit_bias
        return out if bias is None else out + bias

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(K,) logits → probabilities: a softmax over the prompts (CLIP) or one sigmoid per
        prompt (SigLIP, trained with a sigmoid loss)."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.prob_kind == "sigmoid":
            return 1.0 / (1.0 + np.exp(-logits))
        z = np.exp(logits - logits.max())
        return z / z.sum()

    # ------------------------------------------------------------------ text side (word relevance)
    def text_inputs(self, prompts: Sequence[str]) -> TextInputs:
        """The prompts' token ids, attention masks, pooled positions and token strings."""
        raise ValueError(f"clipcam cannot read the text encoder of {self.family_label} models yet.")

    @property
    def text_num_layers(self) -> int:
        """How many blocks the text encoder has, numbered 1..text_num_layers."""
        raise NotImplementedError

    def text_sites(self, start: int) -> list[AttentionSite]:
        """The text encoder's self-attention layers from 1-based ``start`` to the last. Unlike the
        image side, ``split`` gives every prompt's queries, keys and values, each (K, T, D)."""
        raise NotImplementedError

    def text_token_embedding(self) -> torch.nn.Module:
        """The module whose output is the token embeddings (K, T, D), before positions are added."""
        raise NotImplementedError
