"""Greedy decoding of Qwen2-architecture models in bare torch, for small models on CPU.

Why: at the embedded default's size (4 layers of 256) one decoding step through `model.generate`
costs about 4.5 ms on 2 cores, nearly all of it the Python of the transformers modules (wrappers,
output capturing, cache objects), not arithmetic; replay and the agent spend most of their time
there. This loop runs the same weights with the same arithmetic (RMSNorm in float32, rotary
embedding from the model's own `inv_freq`, scaled-dot-product attention, SwiGLU) over a
preallocated KV cache, and gives the same tokens as `model.generate(do_sample=False)` on a
left-padded batch (tested against it).

`lean_decoder(model)` returns None, with the reason, for anything it does not cover (another
architecture, a PEFT wrapper, sliding-window attention, scaled rotary embeddings, logits processors
in the generation config); `LLM.generate` then uses `model.generate`.
"""
from __future__ import annotations

import logging

from uneed.decoding import ban_repeated_ngrams, keep_only

log = logging.getLogger(__name__)

# Generation-config fields that would change greedy decoding, with the values that do not.
_NEUTRAL_GENERATION = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0),
                       "bad_words_ids": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
                       "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "min_new_tokens": (None, 0),
                       "min_length": (None, 0), "encoder_repetition_penalty": (None, 1.0),
                       "sequence_bias": (None,)}


def unsupported_reason(model) -> str:
    """'' when `LeanQwen2` can decode this model exactly, else why not."""
    if type(model).__name__ != "Qwen2ForCausalLM":
        return f"{type(model).__name__} is not a plain Qwen2ForCausalLM"
    cfg = model.config
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act}"
    if getattr(cfg, "use_sliding_window", False) or any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
        return "sliding-window attention"
    rotary = getattr(model.model, "rotary_emb", None)
    if rotary is None or not hasattr(rotary, "inv_freq"):
        return "no rotary embedding module with inv_freq"
    if getattr(rotary, "rope_type", "default") != "default":
        return f"rope_type {rotary.rope_type}"
    attention = model.model.layers[0].self_attn if len(model.model.layers) else None
    if attention is not None and len({p.bias is None for p in (attention.q_proj, attention.k_proj, attention.v_proj)}) > 1:
        return "bias on some of the q/k/v projections only"
    gen = getattr(model, "generation_config", None)
    for field, neutral in _NEUTRAL_GENERATION.items():
        value = getattr(gen, field, None) if gen is not None else None
        if value not in neutral:
            return f"generation_config.{field}={value!r}"
    return ""


def lean_decoder(model) -> "LeanQwen2 | None":
    reason = unsupported_reason(model)
    if reason:
        log.debug("bare-torch decoding not used: %s", reason)
        return None
    return LeanQwen2(model)


class LeanQwen2:
    """Greedy decoding with the weights of a Qwen2ForCausalLM, read at each call (so a model that is
    still training decodes with its current weights)."""

    def __init__(self, model):
        self.model = model
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps

    def _layers(self):
        import torch

        out = []
        for layer in self.model.model.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv_w = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])
            biases = [att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]
            qkv_b = torch.cat(biases) if biases[0] is not None else None  # all or none: unsupported_reason
            out.append((layer.input_layernorm.weight, qkv_w, qkv_b, att.o_proj.weight, att.o_proj.bias,
                        layer.post_attention_layernorm.weight, torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
                        mlp.down_proj.weight))
        return out

    def _norm(self, x, weight):
        import torch

        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(dtype)

    def _rotary_table(self, length: int, dtype, device):
        """cos, sin tables [length, head_dim] for positions 0..length-1, as the model's rotary module
        computes them (float32, then the model's dtype)."""
        import torch

        rotary = self.model.model.rotary_emb
        freqs = torch.arange(length, device=device, dtype=torch.float32)[:, None] * rotary.inv_freq.float()[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        scale = float(getattr(rotary, "attention_scaling", 1.0))
        return (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)

    @staticmethod
    def _rotate(x, cos, sin):
        import torch

        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    def _forward(self, layers, x, cos, sin, cache, start, allowed):
        """Hidden states of new tokens x [B, T, d] written at cache positions start..start+T-1;
        allowed [B, 1, T, start+T] is the attention mask over the cache so far (boolean or additive);
        None: plain causal attention of a prompt without padding (start 0), or one new token of rows
        without padding that sees the whole cache (start > 0, T = 1)."""
        import torch
        import torch.nn.functional as F

        b, t, _ = x.shape
        hq, hk, d = self.heads, self.kv_heads, self.head_dim
        for (ln1, qkv_w, qkv_b, o_w, o_b, ln2, gate_up_w, down_w), (k_cache, v_cache) in zip(layers, cache):
            h = self._norm(x, ln1)
            q, k, v = F.linear(h, qkv_w, qkv_b).split([hq * d, hk * d, hk * d], dim=-1)
            q = self._rotate(q.view(b, t, hq, d).transpose(1, 2), cos, sin)
            k = self._rotate(k.view(b, t, hk, d).transpose(1, 2), cos, sin)
            k_cache[:, :, start:start + t] = k
            v_cache[:, :, start:start + t] = v.view(b, t, hk, d).transpose(1, 2)
            keys, values = k_cache[:, :, :start + t], v_cache[:, :, :start + t]
            if hk != hq:
                keys = keys.repeat_interleave(hq // hk, dim=1)
                values = values.repeat_interleave(hq // hk, dim=1)
            a = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed,
                                               is_causal=allowed is None and start == 0)
            x = x + F.linear(a.transpose(1, 2).reshape(b, t, hq * d), o_w, o_b)
            gate, up = F.linear(self._norm(x, ln2), gate_up_w).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, down_w)
        return x

    def generate(self, input_ids, attention_mask, max_new_tokens: int, eos_token_id, pad_token_id: int,
                 stop_row=None, force_row=None, bf16_prefill: bool = False, no_repeat_ngram: int = 0,
                 allowed_row=None):
        """[B, T + n] like `model.generate(..., do_sample=False)`: the prompt, then greedy tokens,
        `pad_token_id` after a row's end-of-sequence token, n <= max_new_tokens. `stop_row(row, ids)`,
        if given, is asked after each token with the row's new token ids and ends the row on True.
        `force_row(row, ids)`: the token ids that must follow (llm.forcing), taken instead of the greedy
        ones; with one row they go through the model in one pass (jump-forward decoding).
        bf16_prefill: the prompt's pass in bfloat16 (the steps stay in float32): faster on CPUs with
        bf16 matrix units (uneed.device.cpu_bf16_matmul), and no longer the tokens of float32 exactly.
        no_repeat_ngram n > 0: no greedy token completes an n-gram the row's new tokens already hold.
        allowed_row(row, ids): the token ids the row may take next (None: any; llm.spans)."""
        import torch

        model = self.model
        if eos_token_id is None:  # as model.generate: the generation config's end-of-sequence tokens
            eos_token_id = getattr(model.generation_config, "eos_token_id", None)
        eos = torch.tensor(sorted({eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or [])),
                           dtype=torch.long, device=input_ids.device)
        with torch.inference_mode():
            layers = self._layers()
            embed = model.model.embed_tokens.weight
            final_norm = model.model.norm.weight
            head = model.lm_head.weight
            dtype = embed.dtype
            b, t = input_ids.shape
            total = t + max_new_tokens
            cache = [(torch.zeros(b, self.kv_heads, total, self.head_dim, dtype=dtype, device=input_ids.device),
                      torch.zeros(b, self.kv_heads, total, self.head_dim, dtype=dtype, device=input_ids.device))
                     for _ in layers]
            # additive attention mask over the cache: 0 for real tokens, -inf for left padding
            blocked = torch.full((b, 1, 1, total), float("-inf"), dtype=dtype, device=input_ids.device)
            blocked[:, 0, 0, :t] = torch.where(attention_mask.bool(), 0.0, float("-inf"))
            # positions count real tokens only (left padding), as transformers derives them from the mask
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            cos_table, sin_table = self._rotary_table(int(positions.max()) + max_new_tokens + 1, dtype,
                                                      input_ids.device)
            unpadded = bool(attention_mask.bool().all())
            if unpadded:
                allowed = None  # no padding: plain causal attention
            else:
                causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
                allowed = causal[None] & attention_mask.bool()[:, None, :]
                allowed |= torch.eye(t, dtype=torch.bool, device=input_ids.device)[None]  # pad rows see themselves: no NaN
                allowed = allowed[:, None]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_prefill):
                x = self._forward(layers, embed[input_ids], cos_table[positions][:, None],
                                  sin_table[positions][:, None], cache, 0, allowed).to(dtype)
            next_pos = positions[:, -1] + 1
            finished = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
            new = []
            step = t
            last = x[:, -1]
            # forced tokens each row takes next, from the first one on
            pending = [list(force_row(row, []))[:max_new_tokens] if force_row is not None else [] for row in range(b)]
            while len(new) < max_new_tokens:
                logits = torch.nn.functional.linear(self._norm(last, final_norm), head)
                if no_repeat_ngram > 0 and new:
                    ban_repeated_ngrams(logits, torch.stack(new, dim=1), no_repeat_ngram)
                if allowed_row is not None:
                    keep_only(logits, torch.stack(new, dim=1).tolist() if new else [[] for _ in range(b)],
                              allowed_row)
                token = logits.argmax(-1)
                for row in range(b):
                    if pending[row]:
                        token[row] = pending[row].pop(0)
                token = torch.where(finished, torch.full_like(token, pad_token_id), token)
                new.append(token)
                finished |= torch.isin(token, eos)
                if stop_row is not None or force_row is not None:
                    ids_so_far = torch.stack(new, dim=1).tolist()
                    for row in range(b):
                        if not finished[row] and stop_row is not None and stop_row(row, ids_so_far[row]):
                            finished[row] = True
                        if not finished[row] and force_row is not None and not pending[row]:
                            pending[row] = list(force_row(row, ids_so_far[row]))[:max_new_tokens - len(new)]
                if bool(finished.all()) or len(new) == max_new_tokens:
                    break
                chunk = token[:, None]
                while b == 1 and pending[0]:  # jump forward: the forced tokens go through in this same pass
                    forced = torch.tensor([pending[0]], dtype=chunk.dtype, device=chunk.device)
                    chunk = torch.cat([chunk, forced], 1)
                    new += [forced[:, j] for j in range(forced.shape[1])]
                    ids_so_far = torch.stack(new, dim=1).tolist()[0]
                    if stop_row is not None and stop_row(0, ids_so_far):
                        finished[0] = True
                        break
                    pending[0] = list(force_row(0, ids_so_far))[:max_new_tokens - len(new)]
                if bool(finished.all()) or len(new) == max_new_tokens:
                    break
                n = chunk.shape[1]
                blocked[:, 0, 0, step:step + n] = 0.0
                allowed = blocked[..., :step + n]
                if n == 1 and unpadded:
                    allowed = None  # one new token that sees the whole cache: no mask (a faster kernel)
                elif n > 1:  # causal within the chunk
                    allowed = allowed.expand(b, 1, n, step + n).clone()
                    allowed[..., step:] += torch.full((n, n), float("-inf"), dtype=dtype,
                                                      device=input_ids.device).triu(1)
                pos = next_pos[:, None] + torch.arange(n, device=input_ids.device)[None]
                x = self._forward(layers, embed[chunk], cos_table[pos][:, None], sin_table[pos][:, None], cache,
                                  step, allowed)
                last = x[:, -1]
                next_pos = next_pos + n
                step += n
        return torch.cat([input_ids, torch.stack(new, dim=1)], dim=1)
