"""LSTM and GRU sequences in JAX with the input projection hoisted and a hand-written backward
pass: the math behind `zoo.scan` (imported only on the JAX backend).

Both take time-major inputs `x` (steps, batch, features) and Keras' weights and gate layouts
(LSTM i, f, c, o; GRU z, r, h with `reset_after=True`, bias (2, 3 x units)); tanh and sigmoid.
`x @ kernel` for all steps is one matmul outside the loop, so the loop holds one fused
(batch, gates x units) matmul a step. The loop is a `jax.custom_vjp`: the forward loop keeps the
activated gates, the reverse loop carries the state gradients and emits each step's gate
gradients, and the recurrent kernel's gradient is one matmul over all steps afterwards, instead
of JAX's step-by-step derivative of the loop (a small matmul accumulated at every step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["gru", "lstm"]


def _project(x, kernel, bias):
    """x @ kernel (+ bias) for every step at once: (steps, batch, gates x units)."""
    gx = jnp.einsum("tbf,fg->tbg", x, kernel)
    return gx if bias is None else gx + bias


def lstm(x, h0, c0, kernel, recurrent_kernel, bias):
    """The LSTM over time-major `x`: (every step's h (steps, batch, units), the last c)."""
    return _lstm_loop(_project(x, kernel, bias), h0, c0, recurrent_kernel)


def gru(x, h0, kernel, recurrent_kernel, bias):
    """The GRU (reset_after) over time-major `x`: every step's h (steps, batch, units)."""
    units = recurrent_kernel.shape[0]
    if bias is None:
        input_bias, recurrent_bias = None, jnp.zeros((3 * units,), x.dtype)
    else:
        input_bias, recurrent_bias = bias[0], bias[1]
    return _gru_loop(_project(x, kernel, input_bias), h0, recurrent_kernel, recurrent_bias)


# LSTM


def _lstm_forward(gx, h0, c0, r, keep: bool):
    """The loop; with `keep`, each step also gives what its backward step needs: the factors
    that turn (dh, dc) into the gate gradients, and the forget gate."""

    def step(carry, gx_t):
        h, c = carry
        i, f, g, o = jnp.split(gx_t + h @ r, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c_new = f * c + i * g
        tanh_c = jnp.tanh(c_new)
        h = o * tanh_c
        if not keep:
            return (h, c_new), h
        factors = [
            o * (1 - tanh_c * tanh_c),  # dc += dh * this
            g * i * (1 - i),  # d(input gate) = dc * this
            c * f * (1 - f),  # d(forget gate)
            i * (1 - g * g),  # d(candidate)
            tanh_c * o * (1 - o),  # d(output gate) = dh * this
            f,  # dc_prev = dc * f
        ]
        return (h, c_new), (h, jnp.concatenate(factors, axis=-1))

    (_, c), kept = lax.scan(step, (h0, c0), gx)
    return kept, c


@jax.custom_vjp
def _lstm_loop(gx, h0, c0, r):
    return _lstm_forward(gx, h0, c0, r, keep=False)


def _lstm_loop_fwd(gx, h0, c0, r):
    (hs, factors), c = _lstm_forward(gx, h0, c0, r, keep=True)
    return (hs, c), (h0, r, hs, factors)


def _lstm_loop_bwd(saved, cotangents):
    h0, r, hs, factors = saved
    dhs, dc_last = cotangents
    rt = r.T

    def step(carry, xs):
        dh_next, dc_next = carry  # what step t+1 sends back to h_t and c_t
        dh_out, factor = xs
        to_c, di, df, dg, do, f = jnp.split(factor, 6, axis=-1)
        dh = dh_out + dh_next
        dc = dc_next + dh * to_c
        dz = jnp.concatenate([dc * di, dc * df, dc * dg, dh * do], axis=-1)
        return (dz @ rt, dc * f), dz

    start = (jnp.zeros_like(h0), dc_last)
    (dh0, dc0), dgx = lax.scan(step, start, (dhs, factors), reverse=True)
    h_prev = jnp.concatenate([h0[None], hs[:-1]])
    dr = jnp.einsum("tbu,tbg->ug", h_prev, dgx)
    return dgx, dh0, dc0, dr


_lstm_loop.defvjp(_lstm_loop_fwd, _lstm_loop_bwd)


# GRU (reset_after: the reset gate scales the recurrent projection, bias included)


def _gru_forward(gx, h0, r, rb, keep: bool):
    """The loop; with `keep`, each step also gives the factors that turn dh into the gate
    gradients (as `_lstm_forward`)."""

    def step(h, gx_t):
        x_z, x_r, x_h = jnp.split(gx_t, 3, axis=-1)
        h_z, h_r, h_h = jnp.split(h @ r + rb, 3, axis=-1)
        z = jax.nn.sigmoid(x_z + h_z)
        reset = jax.nn.sigmoid(x_r + h_r)
        hh = jnp.tanh(x_h + reset * h_h)
        h_new = z * h + (1 - z) * hh
        if not keep:
            return h_new, h_new
        to_hh = (1 - z) * (1 - hh * hh)  # d(candidate, before tanh) = dh * this
        factors = [
            (h - hh) * z * (1 - z),  # d(update gate)
            to_hh * h_h * reset * (1 - reset),  # d(reset gate)
            to_hh,
            to_hh * reset,  # d(recurrent candidate projection)
            z,  # dh_prev = dh * z + ...
        ]
        return h_new, (h_new, jnp.concatenate(factors, axis=-1))

    return lax.scan(step, h0, gx)[1]


@jax.custom_vjp
def _gru_loop(gx, h0, r, rb):
    return _gru_forward(gx, h0, r, rb, keep=False)


def _gru_loop_fwd(gx, h0, r, rb):
    hs, factors = _gru_forward(gx, h0, r, rb, keep=True)
    return hs, (h0, r, hs, factors)


def _gru_loop_bwd(saved, dhs):
    h0, r, hs, factors = saved
    rt = r.T

    def step(dh_next, xs):
        dh_out, factor = xs
        dz, dreset, dhh, dhr_h, z = jnp.split(factor, 5, axis=-1)
        dh = dh_out + dh_next
        dz, dreset = dh * dz, dh * dreset
        dhr = jnp.concatenate([dz, dreset, dh * dhr_h], axis=-1)
        return dh * z + dhr @ rt, (jnp.concatenate([dz, dreset, dh * dhh], axis=-1), dhr)

    dh0, (dgx, dhr) = lax.scan(step, jnp.zeros_like(h0), (dhs, factors), reverse=True)
    h_prev = jnp.concatenate([h0[None], hs[:-1]])
    dr = jnp.einsum("tbu,tbg->ug", h_prev, dhr)
    return dgx, dh0, dr, dhr.sum(axis=(0, 1))


_gru_loop.defvjp(_gru_loop_fwd, _gru_loop_bwd)
