"""The dual-codebook residual-quantized VAE: a global level-1 codebook and a market-private level 2.

Layer names follow `tff_fedmm.naming`: the global codebook is `shared_global_codebook`, the only
variable the federation may move; the local codebook, encoder and decoder are `private_*`. The model
returns its pieces (latent, quantized vectors, code indices) rather than registering losses with
`add_loss`, because TFF traces Keras models in a graph where `model.losses` goes stale; the losses are
computed by `rqvae_losses` from these outputs, identically in local training and inside TFF.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

GLOBAL_CODEBOOK = "shared_global_codebook"
LOCAL_CODEBOOK = "private_local_codebook"


@dataclass(frozen=True)
class RQVAEConfig:
    input_dim: int = 66  # CF dim 64 + a one-hot entity type (user, item)
    latent_dim: int = 32
    hidden: int = 128
    k_global: int = 64
    k_local: int = 8  # 8 beat 32 on XMarket validation (tasks/ablation_codebook_size.py, BUILD_NOTES)
    beta: float = 0.25
    seed: int = 0
    # > 0: the last `descriptor_dim` input columns are market-invariant descriptors (after the 2 type
    # flags), and level 1 quantizes a fixed, seeded function of flags + descriptors only (see build_rqvae).
    descriptor_dim: int = 0


class CodebookQuantizer(tf.keras.layers.Layer):
    """Nearest-code lookup against one codebook; returns (code vectors, code indices).

    The returned vectors are `codebook[idx]`, differentiable in the codebook only: the straight-through
    path to the encoder is added once, after both levels, by `StraightThrough`.
    """

    def __init__(self, num_codes: int, dim: int, init_stddev: float = 1.0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_codes = num_codes
        self.dim = dim
        self.init_stddev = init_stddev
        self.seed = seed

    def build(self, input_shape):
        self.codebook = self.add_weight(
            name="codebook",
            shape=(self.num_codes, self.dim),
            initializer=tf.keras.initializers.RandomNormal(stddev=self.init_stddev, seed=self.seed),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs):
        idx = nearest_code(inputs, self.codebook)
        return tf.gather(self.codebook, idx), idx

    def get_config(self):
        return {**super().get_config(), "num_codes": self.num_codes, "dim": self.dim,
                "init_stddev": self.init_stddev, "seed": self.seed}


class TrailingColumns(tf.keras.layers.Layer):
    """The last `width` columns of the input (the type flags and descriptors of `rqvae_inputs`)."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self.width = width

    def call(self, inputs):
        return inputs[:, -self.width:]

    def get_config(self):
        return {**super().get_config(), "width": self.width}


class StopGradientSubtract(tf.keras.layers.Layer):
    """Residual for the next level: z - sg(q), so level 2 never pushes level 1's codes."""

    def call(self, inputs):
        z, q = inputs
        return z - tf.stop_gradient(q)


class StraightThrough(tf.keras.layers.Layer):
    """Forward value q, gradient of identity w.r.t. z (the VQ-VAE straight-through estimator)."""

    def call(self, inputs):
        z, q = inputs
        return z + tf.stop_gradient(q - z)


def nearest_code(points: tf.Tensor, codebook: tf.Tensor) -> tf.Tensor:
    """Index of the nearest code by squared Euclidean distance, without materialising [n, K, d]."""
    distances = (
        tf.reduce_sum(points * points, axis=1, keepdims=True)
        - 2.0 * tf.matmul(points, codebook, transpose_b=True)
        + tf.reduce_sum(codebook * codebook, axis=1)[tf.newaxis, :]
    )
    return tf.argmin(distances, axis=1, output_type=tf.int32)


def build_rqvae(config: RQVAEConfig) -> tf.keras.Model:
    """Encoder → global level → residual → local level → straight-through → decoder.

    The encoder ends in a LayerNormalization so latents live at unit scale everywhere: a global
    codebook drawn on the server from N(0, 1) then lands among every market's latents from round one.
    Outputs, in order: reconstruction, latent z, global code vectors, local code vectors, global code
    indices, local code indices, and the level-1 latent (z itself unless `descriptor_dim`).

    With `descriptor_dim`, level 1 quantizes the *anchor latent*: a frozen two-layer map of the type
    flags and descriptors, built from the run seed, hence the same function in every market without
    anything crossing. The private encoder (CF + descriptors) adds an offset to that anchor latent, which
    level 2 quantizes as the residual: level 1 says where in descriptor space, level 2 refines with CF
    (on XMarket validation this beat quantizing the encoder's latent apart from the anchor). A private
    encoder reads each market's CF space, which is defined only up to an invertible transform, so a
    level 1 read from it cannot line up across markets; a level 1 read from descriptors that mean the
    same everywhere can.
    """
    init = lambda k: tf.keras.initializers.GlorotUniform(seed=config.seed + k)  # noqa: E731
    x = tf.keras.Input(shape=(config.input_dim,), name="x")
    h = tf.keras.layers.Dense(config.hidden, activation="relu", kernel_initializer=init(1),
                              name="private_encoder_hidden")(x)
    z = tf.keras.layers.Dense(config.latent_dim, kernel_initializer=init(2), name="private_encoder_out")(h)
    z = tf.keras.layers.LayerNormalization(name="private_encoder_norm")(z)
    z_level1 = z
    if config.descriptor_dim:  # the private encoder adds a CF offset to the anchor: level 2 quantizes it
        z_level1 = _anchor_latent(x, config, init)
        z = tf.keras.layers.Add(name="anchored_latent")([z_level1, z])
    q_global, idx_global = CodebookQuantizer(config.k_global, config.latent_dim, seed=config.seed + 3,
                                             name=GLOBAL_CODEBOOK)(z_level1)
    residual = StopGradientSubtract(name="residual")([z, q_global])
    q_local, idx_local = CodebookQuantizer(config.k_local, config.latent_dim, init_stddev=0.1,
                                           seed=config.seed + 4, name=LOCAL_CODEBOOK)(residual)
    z_q = tf.keras.layers.Add(name="quantized")([q_global, q_local])
    z_st = StraightThrough(name="straight_through")([z, z_q])
    h = tf.keras.layers.Dense(config.hidden, activation="relu", kernel_initializer=init(5),
                              name="private_decoder_hidden")(z_st)
    x_hat = tf.keras.layers.Dense(config.input_dim, kernel_initializer=init(6), name="private_decoder_out")(h)
    return tf.keras.Model(x, [x_hat, z, q_global, q_local, idx_global, idx_local, z_level1], name="rqvae")


def _anchor_latent(x, config: RQVAEConfig, init):
    """Frozen (never trained, never sent): identical in every market because built from the run seed."""
    a = TrailingColumns(config.descriptor_dim + 2, name="descriptor_columns")(x)
    h = tf.keras.layers.Dense(config.hidden, activation="relu", kernel_initializer=init(7), trainable=False,
                              name="private_anchor_hidden")(a)
    z = tf.keras.layers.Dense(config.latent_dim, kernel_initializer=init(8), trainable=False,
                              name="private_anchor_out")(h)
    return tf.keras.layers.LayerNormalization(trainable=False, name="private_anchor_norm")(z)


def rqvae_losses(x: tf.Tensor, outputs, beta: float, learn_global_codebook: bool = True) -> dict:
    """Reconstruction + codebook + commitment losses (RQ-VAE, Lee et al. 2022).

    With `learn_global_codebook=False` the level-1 codebook gets no gradient: under the usage-weighted
    federation rule it moves only by the server's per-code means of assigned latents (k-means/EMA form).
    """
    x_hat, z, q_global, q_local, _, _, z_level1 = outputs
    residual = z - tf.stop_gradient(q_global)
    reconstruction = tf.reduce_mean(tf.reduce_sum(tf.square(x - x_hat), axis=1))
    codebook = tf.reduce_mean(tf.reduce_sum(tf.square(tf.stop_gradient(residual) - q_local), axis=1))
    if learn_global_codebook:
        codebook += tf.reduce_mean(tf.reduce_sum(tf.square(tf.stop_gradient(z_level1) - q_global), axis=1))
    commitment = tf.reduce_mean(
        tf.reduce_sum(tf.square(z_level1 - tf.stop_gradient(q_global)), axis=1)
        + tf.reduce_sum(tf.square(z - tf.stop_gradient(q_global + q_local)), axis=1)
    )
    total = reconstruction + codebook + beta * commitment
    return {"loss": total, "reconstruction": reconstruction, "codebook": codebook, "commitment": commitment}


def global_codebook(model: tf.keras.Model) -> tf.Variable:
    """The level-1 (global) codebook: addressed by layer name, never by position."""
    return model.get_layer(GLOBAL_CODEBOOK).codebook


def local_codebook(model: tf.keras.Model) -> tf.Variable:
    """The level-2 (private, local) codebook: addressed by layer name, never by position."""
    return model.get_layer(LOCAL_CODEBOOK).codebook
