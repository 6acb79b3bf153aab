#!/usr/bin/env python3
"""Trains duet's LLM and its speculative draft on one GPU with PyTorch.

Why a GPU script beside duet's own CPU trainer: speculative decoding only pays
when the target costs far more per token than the draft and a block of a few
target tokens costs about what one does. The CPU-trained 5.9M llm is too cheap
for that (docs/performance.md), and a 16M target needs ~40M training tokens,
hours on these 2 cores and seconds on one H100.

Stages (all on the token streams that `duet tokenize --stories` writes, i.e.
exactly the stories and end-of-text tokens duet train uses):
  1. the target (llama: RMSNorm, adjacent-pair rope = llama.cpp's NORM mode,
     SwiGLU, no biases, separate output matrix) for each --llm-dropout value;
     the one with the lowest validation loss is kept (best checkpoint);
  2. teacher text: the target's own continuations of 32-token story openings
     from train (greedy and sampled at temperature 0.8);
  3. the draft (slm shape, tied embeddings), distilled from the target with
     forward KL on a mix of train windows and teacher text;
  4. both written as GGUF F16 with the metadata and tokenizer of the template
     models (models/llm.gguf, models/slm-kd.gguf), plus metrics.json.

usage: train_pair.py --train train.u16 --valid valid.u16 --out DIR
                     [--llm-template models/llm.gguf] [--slm-template models/slm-kd.gguf]
                     [--smoke] [--device cuda]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_io  # noqa: E402

T0 = time.time()


def log(*a):
    print("[%6.1fs]" % (time.time() - T0), *a, flush=True)


def load_u16(path, device):
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    return (torch.frombuffer(raw, dtype=torch.int16).to(torch.int64) & 0xFFFF).to(device)


# ---- model ------------------------------------------------------------------

class Cfg:
    def __init__(self, n_embd, n_layer, n_head, n_ff, ctx, vocab, tied, dropout=0.0, base=10000.0):
        self.n_embd, self.n_layer, self.n_head, self.n_ff = n_embd, n_layer, n_head, n_ff
        self.ctx, self.vocab, self.tied, self.dropout, self.base = ctx, vocab, tied, dropout, base

    def params(self):
        c = self.n_embd
        per = 4 * c * c + 3 * c * self.n_ff + 2 * c
        return self.n_layer * per + c + self.vocab * c * (1 if self.tied else 2)


class RMSNorm(nn.Module):
    def __init__(self, n, eps=1e-5):
        super().__init__()
        self.w, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.w


def rope_tables(T, D, base, device):
    # llama.cpp rope NORM: pair (2i, 2i+1) turns by pos * base^(-2i/D)
    inv = base ** (-torch.arange(0, D, 2, dtype=torch.float64, device=device) / D)
    ang = torch.arange(T, dtype=torch.float64, device=device)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()  # (T, D/2) each


def rope(x, cos, sin):  # x: (B, T, H, D)
    B, T, H, D = x.shape
    x2 = x.float().reshape(B, T, H, D // 2, 2)
    x0, x1 = x2[..., 0], x2[..., 1]
    c, s = cos[:T, None, :], sin[:T, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).reshape(B, T, H, D).to(x.dtype)


def attend(q, k, v, p):  # (B, H, T, D), causal
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
    T = q.shape[2]
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = F.dropout(att.masked_fill(~mask, float("-inf")).softmax(-1), p)
    return att @ v


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        e = c.n_embd
        self.c = c
        self.attn_norm, self.ffn_norm = RMSNorm(e), RMSNorm(e)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(e, e, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(e, c.n_ff, bias=False), nn.Linear(e, c.n_ff, bias=False)
        self.down = nn.Linear(c.n_ff, e, bias=False)

    def forward(self, x, cos, sin):
        B, T, E = x.shape
        H = self.c.n_head
        p = self.c.dropout if self.training else 0.0
        h = self.attn_norm(x)
        q = rope(self.wq(h).view(B, T, H, E // H), cos, sin).transpose(1, 2)
        k = rope(self.wk(h).view(B, T, H, E // H), cos, sin).transpose(1, 2)
        v = self.wv(h).view(B, T, H, E // H).transpose(1, 2)
        a = attend(q, k, v, p).transpose(1, 2).reshape(B, T, E)
        x = x + F.dropout(self.wo(a), p, self.training)
        h = self.ffn_norm(x)
        return x + F.dropout(self.down(F.silu(self.gate(h)) * self.up(h)), p, self.training)


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.emb = nn.Embedding(c.vocab, c.n_embd)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.norm = RMSNorm(c.n_embd)
        self.out = None if c.tied else nn.Linear(c.n_embd, c.vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        for b in self.blocks:  # residual branches scaled by depth (GPT-2)
            nn.init.normal_(b.wo.weight, std=0.02 / math.sqrt(2 * c.n_layer))
            nn.init.normal_(b.down.weight, std=0.02 / math.sqrt(2 * c.n_layer))
        self.cos = self.sin = None

    def forward(self, idx, last_only=False):
        T = idx.shape[1]
        if self.cos is None or self.cos.device != idx.device:
            self.cos, self.sin = rope_tables(self.c.ctx, self.c.n_embd // self.c.n_head, self.c.base, idx.device)
        x = F.dropout(self.emb(idx), self.c.dropout if self.training else 0.0, self.training)
        for b in self.blocks:
            x = b(x, self.cos, self.sin)
        x = self.norm(x[:, -1:] if last_only else x)
        w = self.emb.weight if self.out is None else self.out.weight
        return (x @ w.t().to(x.dtype)).float()


# ---- data & evaluation ------------------------------------------------------

def windows(stream, B, T, gen):
    off = torch.randint(0, stream.numel() - T - 1, (B,), generator=gen, device="cpu").to(stream.device)
    idx = off[:, None] + torch.arange(T + 1, device=stream.device)[None, :]
    w = stream[idx]
    return w[:, :-1], w[:, 1:]


def autocast(device):
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def eval_loss(model, stream, T, B, device, max_windows=None):
    """Mean next-token loss over non-overlapping windows of T (every token once)."""
    model.eval()
    n = (stream.numel() - 1) // T
    if max_windows:
        n = min(n, max_windows)
    tot, cnt = 0.0, 0
    for i in range(0, n, B):
        j = min(n, i + B)
        idx = torch.arange(i * T, j * T, device=stream.device).view(j - i, T)
        with autocast(device):
            lg = model(stream[idx])
        tot += F.cross_entropy(lg.view(-1, lg.shape[-1]), stream[idx + 1].view(-1), reduction="sum").item()
        cnt += idx.numel()
    model.train()
    return tot / cnt


def story_openings(stream, eot, P, max_n, gen):
    """Offsets right after an end-of-text token with P tokens of story before the next one."""
    starts = (stream[:-P - 1] == eot).nonzero().flatten() + 1
    ok = [s for s in starts.tolist() if not bool((stream[s:s + P] == eot).any())]
    perm = torch.randperm(len(ok), generator=gen).tolist()
    return [ok[i] for i in perm[:max_n]]


@torch.no_grad()
def continue_text(model, prompts, n_new, temp, bs, device, gen):
    """prompts (N, P) -> (N, P + n_new): the model's own continuations."""
    model.eval()
    out = []
    for chunk in prompts.split(bs):
        x = chunk
        for _ in range(n_new):
            with autocast(device):
                lg = model(x[:, -model.c.ctx:], last_only=True)[:, -1]
            if temp == 0:
                nxt = lg.argmax(-1, keepdim=True)
            else:
                pr = torch.softmax(lg / temp, -1)
                nxt = torch.multinomial(pr.cpu() if gen.device.type == "cpu" else pr, 1, generator=gen).to(x.device)
            x = torch.cat((x, nxt), 1)
        out.append(x)
    model.train()
    return torch.cat(out)


@torch.no_grad()
def agreement(student, teacher, seqs, P, device, bs=64):
    """Share of positions >= P where the student's argmax equals the teacher's."""
    student.eval()
    teacher.eval()
    hit = tot = 0
    for chunk in seqs.split(bs):
        with autocast(device):
            a = student(chunk[:, :-1])[:, P - 1:].argmax(-1)
            b = teacher(chunk[:, :-1])[:, P - 1:].argmax(-1)
        hit += (a == b).sum().item()
        tot += a.numel()
    student.train()
    return hit / tot


# ---- training ---------------------------------------------------------------

def lr_at(step, steps, lr, warmup, lr_min_frac=0.1):
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (lr_min_frac + (1 - lr_min_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def make_opt(model, lr, wd):
    mats = [p for p in model.parameters() if p.dim() >= 2]
    vecs = [p for p in model.parameters() if p.dim() < 2]
    kw = {"fused": True} if next(model.parameters()).is_cuda else {}
    return torch.optim.AdamW([{"params": mats, "weight_decay": wd}, {"params": vecs, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), **kw)


def fit(model, batch_loss, steps, lr, warmup, wd, evaluate, eval_every, tag, deadline):
    """AdamW + cosine; evaluate() -> (score, info), lower is better; returns the best state."""
    opt = make_opt(model, lr, wd)
    best = (float("inf"), None, None)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        loss = batch_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        last = step + 1 == steps or time.time() > deadline
        if (step + 1) % eval_every == 0 or last:
            score, info = evaluate()
            if score < best[0]:
                best = (score, {k: v.detach().clone() for k, v in model.state_dict().items()}, dict(info, step=step + 1))
            log("%s step %d/%d train %.4f %s" % (tag, step + 1, steps, loss.item(), json.dumps(info)))
            if last:
                break
    model.load_state_dict(best[1])
    return best[2]


# ---- export -----------------------------------------------------------------

def export(model, template, path, name):
    c = model.c
    kvs, _ = gguf_io.read(template)
    U32 = gguf_io.U32
    for key, val in (("llama.context_length", c.ctx), ("llama.embedding_length", c.n_embd),
                     ("llama.block_count", c.n_layer), ("llama.feed_forward_length", c.n_ff),
                     ("llama.rope.dimension_count", c.n_embd // c.n_head),
                     ("llama.attention.head_count", c.n_head), ("llama.attention.head_count_kv", c.n_head),
                     ("llama.vocab_size", c.vocab), ("general.file_type", 1)):
        gguf_io.set_kv(kvs, key, U32, val)
    gguf_io.set_kv(kvs, "general.name", gguf_io.STRING, name)
    tensors = []

    def put(tname, w):
        w = w.detach().float().cpu()
        if w.dim() == 2:  # torch (out, in) row-major = ggml ne [in, out]
            a = w.to(torch.float16).contiguous()
            tensors.append({"name": tname, "type": gguf_io.GGML_F16, "ne": [a.shape[1], a.shape[0]],
                            "data": a.numpy().tobytes()})
        else:
            tensors.append({"name": tname, "type": gguf_io.GGML_F32, "ne": [w.shape[0]], "data": w.numpy().tobytes()})

    put("token_embd.weight", model.emb.weight)
    put("output_norm.weight", model.norm.w)
    if model.out is not None:
        put("output.weight", model.out.weight)
    for i, b in enumerate(model.blocks):
        for tname, w in (("attn_norm", b.attn_norm.w), ("attn_q", b.wq.weight), ("attn_k", b.wk.weight),
                         ("attn_v", b.wv.weight), ("attn_output", b.wo.weight), ("ffn_norm", b.ffn_norm.w),
                         ("ffn_gate", b.gate.weight), ("ffn_up", b.up.weight), ("ffn_down", b.down.weight)):
            put("blk.%d.%s.weight" % (i, tname), w)
    gguf_io.write(path, kvs, tensors)
    log("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


# ---- main -------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--llm-template", default="models/llm.gguf")
    ap.add_argument("--slm-template", default="models/slm-kd.gguf")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes and a few steps (CPU check)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget", type=float, default=400.0, help="seconds for the whole run")
    ap.add_argument("--llm-dropout", default="0.2,0.3")
    ap.add_argument("--llm-steps", type=int, default=1400)
    ap.add_argument("--slm-steps", type=int, default=5000)
    ap.add_argument("--gen-seqs", type=int, default=3072)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    dev = a.device
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        log("device", torch.cuda.get_device_name(0), "torch", torch.__version__)
    train, valid = load_u16(a.train, dev), load_u16(a.valid, dev)
    kvs, _ = gguf_io.read(a.llm_template)
    eot = gguf_io.get_kv(kvs, "tokenizer.ggml.eos_token_id")
    vocab = len(gguf_io.get_kv(kvs, "tokenizer.ggml.tokens")[1])
    log("train %d tokens, valid %d, vocab %d, eot %d" % (train.numel(), valid.numel(), vocab, eot))
    deadline_all = T0 + a.budget
    T = 64 if a.smoke else 512
    metrics = {"torch": torch.__version__, "seed": a.seed}

    # 1. the target
    if a.smoke:
        lcfg = dict(n_embd=64, n_layer=2, n_head=2, n_ff=160, ctx=T, vocab=vocab, tied=False)
        scfg = dict(n_embd=32, n_layer=1, n_head=2, n_ff=96, ctx=T, vocab=vocab, tied=True)
        B, llm_steps, slm_steps, ev = 8, 30, 30, 10
    else:
        lcfg = dict(n_embd=384, n_layer=8, n_head=6, n_ff=1024, ctx=T, vocab=vocab, tied=False)
        # the draft trains on windows of 256 (its context): speculation rarely
        # looks further, and half-length windows double its steps per second
        scfg = dict(n_embd=128, n_layer=4, n_head=4, n_ff=352, ctx=256, vocab=vocab, tied=True)
        B, llm_steps, slm_steps, ev = 32, a.llm_steps, a.slm_steps, 200
    drops = [float(x) for x in a.llm_dropout.split(",")]
    best_llm, runs = None, []
    for k, dp in enumerate(drops):
        torch.manual_seed(a.seed + k)
        m = Llama(Cfg(dropout=dp, **lcfg)).to(dev)
        log("llm %d params, dropout %.2f" % (m.c.params(), dp))

        def llm_loss(step, m=m):
            x, y = windows(train, B, T, gen)
            with autocast(dev):
                lg = m(x)
            return F.cross_entropy(lg.view(-1, vocab), y.reshape(-1))

        def llm_eval(m=m):
            v = eval_loss(m, valid, T, 64, dev, max_windows=8 if a.smoke else None)
            return v, {"valid_loss": round(v, 4)}

        share = (deadline_all - time.time()) * 0.45 / (len(drops) - k)
        info = fit(m, llm_loss, llm_steps, 1e-3, 100 if not a.smoke else 5, 0.1, llm_eval, ev,
                   "llm(d=%.2f)" % dp, time.time() + share)
        runs.append(dict(info, dropout=dp))
        if best_llm is None or info["valid_loss"] < best_llm[1]["valid_loss"]:
            best_llm = (m, info)
    llm = best_llm[0]
    llm.c.dropout = 0.0
    llm.eval()
    metrics["llm"] = {"params": llm.c.params(), "shape": lcfg, "runs": runs, "chosen": best_llm[1]}
    export(llm, a.llm_template, os.path.join(a.out, "llm.gguf"), "duet-llm")

    # 2. teacher text: continuations of story openings (half greedy, half sampled)
    P, n_new = 32, (32 if a.smoke else 224)
    opens = story_openings(train, eot, P, 64 if a.smoke else a.gen_seqs, gen)
    prompts = train[torch.tensor(opens, device=dev)[:, None] + torch.arange(P, device=dev)[None, :]]
    half = prompts.shape[0] // 2
    g_dev = torch.Generator(device=dev).manual_seed(a.seed) if dev.startswith("cuda") else gen
    greedy = continue_text(llm, prompts[:half], n_new, 0.0, 512, dev, g_dev)
    log("teacher greedy text %s" % (tuple(greedy.shape),))
    sampled = continue_text(llm, prompts[half:], n_new, 0.8, 512, dev, g_dev)
    log("teacher sampled text %s" % (tuple(sampled.shape),))
    gen_seqs = torch.cat((greedy, sampled))  # (N, P + n_new)
    # evaluation set: greedy continuations of valid story openings (the bench's situation)
    vopen = story_openings(valid, eot, P, 16 if a.smoke else 256, gen)
    vprompts = valid[torch.tensor(vopen, device=dev)[:, None] + torch.arange(P, device=dev)[None, :]]
    vgreedy = continue_text(llm, vprompts, 32 if a.smoke else 128, 0.0, 256, dev, g_dev)

    # 3. the draft: forward KL to the target on data windows and teacher text
    torch.manual_seed(a.seed + 100)
    s = Llama(Cfg(**scfg)).to(dev)
    log("slm %d params" % s.c.params())
    Ts = scfg["ctx"]

    def slm_loss(step):
        if step % 2:
            rows = torch.randint(0, gen_seqs.shape[0], (B * 2,), generator=gen).to(dev)
            x = gen_seqs[rows, :Ts]
        else:
            x, _ = windows(train, B * 2, Ts, gen)
        with torch.no_grad(), autocast(dev):
            tl = llm(x)
        with autocast(dev):
            sl = s(x)
        return -(torch.softmax(tl, -1) * torch.log_softmax(sl, -1)).sum(-1).mean()

    def slm_eval():
        ag = agreement(s, llm, vgreedy, P, dev)
        v = eval_loss(s, valid, Ts, 64, dev, max_windows=8 if a.smoke else 400)
        return -ag, {"greedy_agreement": round(ag, 4), "valid_loss": round(v, 4)}

    info = fit(s, slm_loss, slm_steps, 3e-3, 100 if not a.smoke else 5, 0.1, slm_eval, ev, "slm",
               deadline_all - 30)
    s.eval()
    metrics["slm"] = {"params": s.c.params(), "shape": scfg, "chosen": info}
    export(s, a.slm_template, os.path.join(a.out, "slm-draft.gguf"), "duet-slm-draft")
    metrics["seconds"] = round(time.time() - T0, 1)
    with open(os.path.join(a.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    # logits of the first 64 valid tokens: the engine must reproduce them (F16 rounding aside)
    with torch.no_grad():
        ids = valid[:64][None]
        for tag, m in (("llm", llm), ("slm", s)):
            m.float()
            with open(os.path.join(a.out, "%s.logits64.f32" % tag), "wb") as f:
                f.write(m(ids)[0].cpu().numpy().astype("<f4").tobytes())
    log("done", json.dumps(metrics))


if __name__ == "__main__":
    main()
