"""Dynamic loss scaling for fp16 mixed precision, in the usual form (as torch.amp.GradScaler does):
scale the loss, unscale the gradients, skip the step and halve the scale on inf/NaN, double the
scale after ``growth_interval`` finite steps in a row."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


class DynamicLossScale(tf.Module):
    def __init__(self, initial: float = 2.0**16, growth_interval: int = 2000) -> None:
        super().__init__(name="loss_scale")
        self.scale = tf.Variable(initial, dtype=tf.float32, trainable=False, name="scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")
        self.growth_interval = growth_interval

    def unscale(self, grads: list) -> tuple[list, tf.Tensor]:
        """Divide gradients by the scale; also return whether all of them are finite."""
        inv = 1.0 / self.scale
        out, finite = [], []
        for g in grads:
            if g is None:
                out.append(None)
                continue
            if isinstance(g, tf.IndexedSlices):
                g = tf.IndexedSlices(g.values * inv, g.indices, g.dense_shape)
                finite.append(tf.reduce_all(tf.math.is_finite(g.values)))
            else:
                g = g * inv
                finite.append(tf.reduce_all(tf.math.is_finite(g)))
            out.append(g)
        return out, tf.reduce_all(tf.stack(finite))

    def update(self, finite: tf.Tensor) -> None:
        """Adjust the scale after a step (call inside a tf.function)."""
        if finite:
            self.good_steps.assign_add(1)
            if self.good_steps >= self.growth_interval:
                self.scale.assign(self.scale * 2.0)
                self.good_steps.assign(0)
        else:
            self.scale.assign(tf.maximum(self.scale * 0.5, 1.0))
            self.good_steps.assign(0)


def scaled_loss(loss: tf.Tensor, loss_scale: DynamicLossScale | None) -> tf.Tensor:
    """The loss to differentiate: multiplied by the scale under fp16, else itself."""
    return loss * loss_scale.scale if loss_scale is not None else loss


def apply_scaled(grads: list, loss_scale: DynamicLossScale | None, apply: Callable[[list], None]) -> None:
    """``apply(grads)``; under fp16 the gradients are unscaled first, a step with inf/NaN in them is
    skipped and the scale adjusted (call inside a tf.function)."""
    if loss_scale is None:
        apply(grads)
        return
    grads, finite = loss_scale.unscale(grads)
    if finite:
        apply(grads)
    loss_scale.update(finite)
