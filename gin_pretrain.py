"""A graph encoder with chemistry in it, offline: our GIN pretrained by attribute masking on packaged molecules.

    python gin_pretrain.py                      # -> $OMNIMOL_CACHE/gin_attrmask.safetensors (a few CPU minutes)
    python train.py --gin pretrained ...        # that file, built on first use; or --gin PATH
    python gin_pretrain.py --probe FILE         # linear probes of its atom features vs the random init

MoleculeSTM's GIN weights are not available offline; MoleculeSTM initialised its GIN from GraphMVP, whose GIN
follows Hu et al. (ICLR 2020, "Strategies for Pre-training Graph Neural Networks"). Their node-level objective,
attribute masking, is what this does: in each molecule 15% of the atoms (at least one) have their atom type
replaced by a mask index, and a linear head predicts the masked atoms' elements from the GIN's last-layer node
embeddings (cross-entropy). The mask index is the table's last row (118, the wildcard `*`, which real molecules do
not use), so the weights keep MoleculeSTM's exact shapes and load strictly (molecule.load_gin); the head is
discarded. Chirality tags stay visible, bonds are untouched.

Molecules: rdkit's NCI first_5K and PAINS WEHI sets and the PubChem identifier table of `chemicals` (the demo's
molecule sources), canonical, single fragment, 4-40 heavy atoms, deduplicated, without any molecule the demo's
split rule puts in a test set (reactions.is_test on the canonical SMILES), a seeded subset of --molecules of them.
Training runs for --minutes (Adam, lr 1e-3, batches of 128 molecules, dropout 0.1 as the GIN's), then the
BatchNorm running statistics are those of the training batches, as in Hu et al.'s released models.

The probe (--probe): frozen node embeddings of 600 of the demo's test-split molecules (never pretrained on); a
multinomial logistic regression fit on the atoms of the first half predicts, on the second half, (a) the atom's
element, (b) its heavy-atom degree, (c) its element when its own type is masked (one atom per molecule: context
only); accuracy of the pretrained GIN beside the seeded random one (molecule.random_gin).
"""
import argparse
import os
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from rdkit import Chem, rdBase
from safetensors.torch import save_file
from tqdm import tqdm

import demo_data
import molecule
import reactions
from smollm import cache_root

MASK = molecule.ATOM_FEATURE_DIMS[0] - 1  # 118: the wildcard row, the mask index
MASK_RATE, BATCH, LR = 0.15, 128, 1e-3
MOLECULES, MINUTES, SEED = 30_000, 4.0, 0
FILE = "gin_attrmask.safetensors"


def default_path() -> str:
    return os.path.join(cache_root(), FILE)


def molecules(n: int, seed: int = SEED) -> list[str]:
    """Up to n canonical SMILES from the packaged sources (see the module docstring), none a demo test molecule."""
    pool = [c for c, _, _ in demo_data._molecule_pool(limit=10_000_000, seed=seed)]
    tsv = demo_data._package_file("chemicals", *demo_data.PUBCHEM_TSV)
    with open(tsv, encoding="utf-8") as f:
        pool += [line.split("\t")[4] for line in f if line.count("\t") >= 4]
    rng = random.Random(seed)
    rng.shuffle(pool)
    out, seen = [], set()
    with rdBase.BlockLogs():
        for s in pool:
            m = Chem.MolFromSmiles(s)
            if m is None or not 4 <= m.GetNumAtoms() <= 40:
                continue
            c = Chem.MolToSmiles(m)
            if "." in c or c in seen or reactions.is_test(c):
                continue
            seen.add(c)
            out.append(c)
            if len(out) == n:
                break
    return out


def graphs_of(smiles: list[str]) -> list[molecule.MolGraph]:
    return [g for g in (molecule.smiles_to_graph(s) for s in smiles) if g is not None]


def mask_atoms(x: torch.Tensor, n_atoms: list[int], gen: torch.Generator):
    """x (N, 2) atom features of a batch -> (masked copy, indices of the masked atoms): in each molecule
    max(1, round(MASK_RATE x its atoms)) atoms, drawn without replacement, get atom type MASK."""
    picks, start = [], 0
    for n in n_atoms:
        k = max(1, round(MASK_RATE * n))
        picks.append(start + torch.randperm(n, generator=gen)[:k])
        start += n
    idx = torch.cat(picks)
    masked = x.clone()
    masked[idx, 0] = MASK
    return masked, idx


def masked_loss(gnn, head, batch, gen):
    """Cross-entropy of the masked atoms' elements (and their accuracy) for a list of graphs."""
    x, ei, ea, n = molecule.batch_graphs(batch)
    masked, idx = mask_atoms(x, n, gen)
    logits = head(gnn(masked, ei, ea)[idx])                        # (M, 119)
    return F.cross_entropy(logits, x[idx, 0]), (logits.argmax(1) == x[idx, 0]).float().mean()


def pretrain(graphs, minutes=MINUTES, seed=SEED, max_steps=None, log=print, batch_size=BATCH, head_out=None):
    """Attribute masking on `graphs` for `minutes` (or max_steps) -> a frozen molecule.GIN (eval mode).
    head_out: a list that receives the trained prediction head (tests)."""
    gin = molecule.random_gin(seed)
    gnn = gin.molecule_node_model.train().requires_grad_(True)   # the inner GNN: BatchNorm in training mode
    head = nn.Linear(molecule.GIN_DIM, molecule.ATOM_FEATURE_DIMS[0])
    opt = torch.optim.Adam(list(gnn.parameters()) + list(head.parameters()), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    order, pos, step, t0 = torch.randperm(len(graphs), generator=gen).tolist(), 0, 0, time.time()
    bar = tqdm(total=max_steps, desc="GIN attribute masking", unit="step")
    while (max_steps is None and time.time() - t0 < 60 * minutes) or (max_steps is not None and step < max_steps):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(graphs), generator=gen).tolist(), 0
        loss, acc = masked_loss(gnn, head, [graphs[i] for i in order[pos:pos + batch_size]], gen)
        pos += batch_size
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}")
    bar.close()
    if head_out is not None:
        head_out.append(head)
    log(f"[gin] {step} steps of {BATCH} molecules in {time.time() - t0:.0f} s")
    return gin.requires_grad_(False).eval()


def save(gin, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    save_file({k: v.contiguous() for k, v in gin.state_dict().items()}, tmp,
              metadata={"objective": "attribute masking (Hu et al. 2020)", "mask_index": str(MASK)})
    os.replace(tmp, path)  # a reader never sees half a file


def ensure(path=None, log=print) -> str:
    """The pretrained GIN's file (train.py --gin pretrained): built with the defaults on first use."""
    path = path or default_path()
    if not os.path.exists(path):
        log(f"[gin] building the attribute-masking GIN once -> {path} ({MINUTES:g} min of training)")
        save(pretrain(graphs_of(molecules(MOLECULES)), log=log), path)
    return path


# ----------------------------------------------------------------------------- the probe

def _features(gin, graphs, mask_self=False, gen=None):
    """(node embeddings (N, D), element labels (N,), degree labels (N,)); mask_self: one atom per molecule has
    its type masked and only those atoms are returned."""
    x, ei, ea, n = molecule.batch_graphs(graphs)
    degree = torch.bincount(ei[0], minlength=x.shape[0])
    if mask_self:
        starts = torch.tensor([0] + n[:-1]).cumsum(0)
        idx = starts + torch.tensor([int(torch.randint(k, (1,), generator=gen)) for k in n])
        masked = x.clone()
        masked[idx, 0] = MASK
        with torch.no_grad():
            h = gin(masked, ei, ea)
        return h[idx], x[idx, 0], degree[idx]
    with torch.no_grad():
        h = gin(x, ei, ea)
    return h, x[:, 0], degree


def _probe_accuracy(train, test, steps=300):
    """Multinomial logistic regression (full-batch Adam, weight decay 1e-4) on train (h, y) -> accuracy on test."""
    (h, y), (ht, yt) = train, test
    mu, sd = h.mean(0), h.std(0) + 1e-6
    classes = int(max(y.max(), yt.max())) + 1
    lin = nn.Linear(h.shape[1], classes)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-4)
    z, zt = (h - mu) / sd, (ht - mu) / sd
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(lin(z), y).backward()
        opt.step()
    with torch.no_grad():
        return float((lin(zt).argmax(1) == yt).float().mean())


def probe(gin, graphs, seed=SEED) -> dict:
    """{"element", "degree", "masked element"}: linear-probe accuracies on the last half of graphs' atoms,
    fit on the first half."""
    half = len(graphs) // 2
    gen = torch.Generator().manual_seed(seed)
    out = {}
    tr, te = _features(gin, graphs[:half]), _features(gin, graphs[half:])
    out["element"] = _probe_accuracy((tr[0], tr[1]), (te[0], te[1]))
    out["degree"] = _probe_accuracy((tr[0], tr[2]), (te[0], te[2]))
    tr, te = _features(gin, graphs[:half], True, gen), _features(gin, graphs[half:], True, gen)
    out["masked element"] = _probe_accuracy((tr[0], tr[1]), (te[0], te[1]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=None, help=f"the weights file; default $OMNIMOL_CACHE/{FILE}")
    p.add_argument("--molecules", type=int, default=MOLECULES, help="training molecules (a seeded subset)")
    p.add_argument("--minutes", type=float, default=MINUTES, help="training time")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--probe", metavar="FILE", default=None, help="only probe FILE's GIN against the random init")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe is None:
        path = args.out or default_path()
        save(pretrain(graphs_of(molecules(args.molecules, args.seed)), args.minutes, args.seed), path)
        print(f"[gin] wrote {path}")
        args.probe = path
    # held-out molecules for the probe: the demo's test-split molecules, which pretraining never saw
    pool = [c for c, _, _ in demo_data._molecule_pool(limit=10_000_000, seed=args.seed) if reactions.is_test(c)]
    graphs = graphs_of(pool[:600])
    pre, rnd = probe(molecule.load_gin(args.probe), graphs, args.seed), probe(molecule.random_gin(0), graphs, args.seed)
    print("| probe (held-out molecules) | random init | attribute masking |\n|---|---|---|")
    for k in pre:
        print(f"| {k} | {rnd[k]:.3f} | {pre[k]:.3f} |")
    return {"random": rnd, "pretrained": pre}


if __name__ == "__main__":
    main()
