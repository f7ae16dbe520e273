"""KV caches and decode steps for `CausalLM.generate` (model.py).

    KVCache        a growing cache: attention reads the filled prefix (shapes change each step)
    StaticKVCache  gpt-fast's static cache: fixed shapes, writes at device-held slot indices
    EagerDecoder   the plain decode path on a KVCache
    Decoder        the static path: fixed-address inputs, the decode step captured as a CUDA graph on CUDA

A decoder is built from (model, inputs_embeds (B, T, D), left-padding attention_mask (B, T),
max_new_tokens); `prefill()` -> logits (B, 1, V) of the last prompt position, `expand(k)` copies each
prompt's cache k times (k samples per prompt from one prefill), `step(nxt (B,))` -> logits (B, 1, V) of the
next one. Both give the same tokens (tests/test_static_decode.py, test_gpu.py).
This file imports nothing of ours: the model is passed in.
"""
import torch


class KVCache:
    """Preallocated per-layer keys/values (B, n_kv, T_max, D); `pos` is the number of filled slots.
    Attention reads the filled prefix (shapes grow each step: the eager path)."""
    static = False

    def __init__(self, cfg, batch, max_len, device, dtype):
        shape = (batch, cfg.num_key_value_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.num_hidden_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.num_hidden_layers)]
        self.pos = 0

    def update(self, i, k, v):  # k, v: (B, n_kv, T_new, D)
        t0, t1 = self.pos, self.pos + k.shape[2]
        self.k[i][:, :, t0:t1] = k
        self.v[i][:, :, t0:t1] = v
        return self.k[i][:, :, :t1], self.v[i][:, :, :t1]


class StaticKVCache(KVCache):
    """gpt-fast's static cache: new keys are written at the slots in the device tensor `idx` (T_new,)
    and attention always reads all T_max slots, with the caller's (B, T_max) mask hiding the unwritten
    ones. Every shape is fixed, and no host value changes between decode steps, so one decode step
    can be captured as a CUDA graph and replayed."""
    static = True

    def __init__(self, cfg, batch, max_len, device, dtype):
        super().__init__(cfg, batch, max_len, device, dtype)
        self.max_len = max_len
        self.idx = torch.zeros(1, dtype=torch.long, device=device)

    def update(self, i, k, v):
        self.k[i].index_copy_(2, self.idx, k)
        self.v[i].index_copy_(2, self.idx, v)
        return self.k[i], self.v[i]


class EagerDecoder:
    """The plain decode path: a growing KVCache, the mask extended by one column per step."""

    def __init__(self, model, inputs_embeds, attention_mask, max_new_tokens):
        B, T, _ = inputs_embeds.shape
        self.model, self.embeds, self.mask = model, inputs_embeds, attention_mask
        self.cache = KVCache(model.config, B, T + max_new_tokens, inputs_embeds.device, inputs_embeds.dtype)

    def prefill(self):
        return self.model(inputs_embeds=self.embeds, attention_mask=self.mask, cache=self.cache, last_only=True)

    def expand(self, k):  # after prefill: each prompt's cache copied k times (B -> B * k rows, prompt-major)
        self.cache.k = [t.repeat_interleave(k, 0) for t in self.cache.k]
        self.cache.v = [t.repeat_interleave(k, 0) for t in self.cache.v]
        self.mask = self.mask.repeat_interleave(k, 0)

    def __call__(self, nxt):  # (B,) -> logits (B, 1, V) of the next position
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        return self.model(nxt[:, None], attention_mask=self.mask, cache=self.cache)


class Decoder:
    """gpt-fast-style decoding: a StaticKVCache and fixed-address input buffers (token, position, cache
    slot, key mask), so the decode step has fixed shapes and reads no host value; on CUDA it is captured
    once as a CUDA graph and replayed each step (one launch instead of hundreds of kernels). The same
    arithmetic as EagerDecoder, except that attention also reads the masked, unwritten cache slots
    (their weight is exactly 0). The cache length is rounded up to 128 slots."""

    def __init__(self, model, inputs_embeds, attention_mask, max_new_tokens, graph=None):
        B, T, _ = inputs_embeds.shape
        dev = inputs_embeds.device
        S = (T + max_new_tokens + 127) // 128 * 128
        self.model, self.embeds, self.T = model, inputs_embeds, T
        self.cache = StaticKVCache(model.config, B, S, dev, inputs_embeds.dtype)
        self.key_mask = torch.zeros(B, S, dtype=torch.long, device=dev)    # (B, S): 1 = a real key slot
        self.key_mask[:, :T] = attention_mask
        self.tok = torch.zeros(B, 1, dtype=torch.long, device=dev)          # the token fed at this step
        self.pos = attention_mask.long().sum(1, keepdim=True)               # (B, 1) its RoPE position
        self.slot = torch.full((1,), T, dtype=torch.long, device=dev)       # its cache slot
        self.graph = (dev.type == "cuda") if graph is None else graph
        self.cuda_graph, self.logits = None, None

    def prefill(self):
        self.cache.idx = torch.arange(self.T, device=self.embeds.device)
        pos = (self.key_mask[:, :self.T].cumsum(-1) - 1).clamp(min=0)
        logits = self.model(inputs_embeds=self.embeds, attention_mask=self.key_mask, position_ids=pos,
                            cache=self.cache, last_only=True)
        self.cache.idx = self.slot
        return logits

    def expand(self, k):  # after prefill, before the first step (and its capture): B -> B * k rows
        self.cache.k = [t.repeat_interleave(k, 0) for t in self.cache.k]
        self.cache.v = [t.repeat_interleave(k, 0) for t in self.cache.v]
        self.key_mask, self.pos = self.key_mask.repeat_interleave(k, 0), self.pos.repeat_interleave(k, 0)
        self.tok = self.tok.repeat_interleave(k, 0)

    def _step(self):  # reads tok/pos/slot/key_mask, writes the cache at `slot`: idempotent for given inputs
        self.key_mask.index_fill_(1, self.slot, 1)
        return self.model(self.tok, attention_mask=self.key_mask, position_ids=self.pos, cache=self.cache)

    def __call__(self, nxt):
        self.tok.copy_(nxt[:, None])
        if not self.graph:
            logits = self._step()
        else:
            if self.cuda_graph is None:
                self._capture()
            self.cuda_graph.replay()
            logits = self.logits
        self.slot.add_(1)
        self.pos.add_(1)
        return logits

    def _capture(self):
        # warm up on a side stream (Triton compiles, lazy inits), then capture. Autocast's cast cache
        # is off: a cached cast made outside the graph would be freed while the graph still reads it.
        ac = torch.is_autocast_enabled("cuda")
        ctx = lambda: torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), enabled=ac,  # noqa: E731
                                     cache_enabled=False)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s), ctx():
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(s)
        self.cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.cuda_graph), ctx():
            self.logits = self._step()
