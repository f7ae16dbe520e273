"""The molecule modality: rdkit featurization, MoleculeSTM's GIN (frozen), the projector, and the
LLaVA-style splice of one embedding per heavy atom into the prompt.

    g = smiles_to_graph("CC(=O)O")              # or selfies_to_graph("[C][C][=Branch1][C][=O][O]")
    attach_molecule(model)                      # model.graph_tower (frozen GIN) + model.mm_projector
    emb, mask, labels = embed_inputs(model, ids, [g], labels=lab)   # ids hold MOL_TOKEN_ID (-200)
    logits = model(inputs_embeds=emb, attention_mask=mask)

    python molecule.py bench                                        # molecules/s, one core
    python convert.py moleculestm moleculestm.pth gin.safetensors   # MoleculeSTM .pth -> safetensors, once

Default graph encoder: no pretrained MoleculeSTM weights ship offline, so without `gin_path` the GIN is
a SEEDED RANDOM INIT (seed 0, OGB's init), frozen. Its tokens carry the graph structure but no
pretrained chemistry; pass a converted checkpoint for the paper's encoder.

Featurization is the release's: heavy atoms only (rdkit's default
sanitised, implicit-H molecule); atom features [Z - 1 (wildcard * -> 118), chirality tag 0-3]; bond
features [single/double/triple/aromatic -> 0-3, direction none/endupright/enddownright -> 0-2]; every
bond in both directions; no self loops. Where the release raises KeyError we map and count instead
(FEATURE_STATS), because a training run must not die on one organometallic:
  - dative bonds (DATIVE, DATIVEONE, DATIVEL, DATIVER) and every other bond type rdkit can produce
    (IONIC, HYDROGEN, ZERO, ONEANDAHALF, ...) -> SINGLE (0). A dative bond is a two-electron sigma bond,
    and SMILES that write it as a plain bond get SINGLE anyway. OGB's spare "misc" row 4 is not used:
    MoleculeSTM never trained it.
  - bond directions EITHERDOUBLE, BEGINWEDGE, BEGINDASH, UNKNOWN -> NONE (0).
  - chiral tags newer than the release's four (CHI_TETRAHEDRAL, CHI_ALLENE, CHI_SQUAREPLANAR,
    CHI_TRIGONALBIPYRAMIDAL, CHI_OCTAHEDRAL) -> CHI_OTHER (3), which is what older rdkit produced for
    non-tetrahedral centres.
`strict=True` restores the release's behaviour (raise UnsupportedFeatureError). An unparsable or
empty molecule gives None (counted), never an exception.
"""
import argparse
import collections
import os
import time
from dataclasses import dataclass

import selfies as sf
import torch
import torch.nn as nn
import torch.nn.functional as F
from rdkit import Chem, RDConfig, rdBase
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch.nn.utils.rnn import pad_sequence

from tokenizer import IGNORE_INDEX, MOL_TOKEN_ID  # MOL_TOKEN_ID = -200, the release's <image>

# ----------------------------------------------------------------------------- featurization

# OGB 1.2.0 vocabulary sizes (MoleculeSTM monkey-patches ogb to them): the checkpoint's table shapes.
ATOM_FEATURE_DIMS = [119, 4, 12, 12, 10, 6, 6, 2, 2]
BOND_FEATURE_DIMS = [5, 6, 2]
GIN_DIM, GIN_LAYERS, GIN_DROPOUT = 300, 5, 0.1

# FEATURE_STATS counts, per process, what featurization saw: "molecules", "unparsable", "empty",
# "selfies_undecodable", "mapped_molecules" (molecules with at least one mapped feature), and one
# "bond_type:<NAME>" / "bond_dir:<NAME>" / "chiral_tag:<NAME>" per mapped atom or bond. data.py reads
# it (and with DataLoader workers, sums what each worker reports). reset_feature_stats() zeroes it.
FEATURE_STATS = collections.Counter()


def reset_feature_stats():
    FEATURE_STATS.clear()


class UnsupportedFeatureError(KeyError):
    """A bond type, bond direction or chiral tag outside the release's vocabulary (strict=True only)."""


def _tables():
    BT, BD, CT = Chem.BondType, Chem.BondDir, Chem.ChiralType
    # name -> (index, mapped?) for every value this rdkit knows
    bond_type = {v: (0, True) for v in BT.values.values()}
    bond_type.update({BT.SINGLE: (0, False), BT.DOUBLE: (1, False), BT.TRIPLE: (2, False), BT.AROMATIC: (3, False)})
    bond_dir = {v: (0, True) for v in BD.values.values()}
    bond_dir.update({BD.NONE: (0, False), BD.ENDUPRIGHT: (1, False), BD.ENDDOWNRIGHT: (2, False)})
    chiral = {v: (3, True) for v in CT.values.values()}
    chiral.update({CT.CHI_UNSPECIFIED: (0, False), CT.CHI_TETRAHEDRAL_CW: (1, False),
                   CT.CHI_TETRAHEDRAL_CCW: (2, False), CT.CHI_OTHER: (3, False)})
    return bond_type, bond_dir, chiral


_TABLES = None


@dataclass
class MolGraph:
    """One molecule: x (N, 2) atom features, edge_index (2, E) with both directions of every bond,
    edge_attr (E, 2) bond features; all int64 on CPU."""
    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]


def mol_to_graph(mol, strict: bool = False) -> MolGraph | None:
    """rdkit Mol -> MolGraph (None for None or a molecule without atoms)."""
    global _TABLES
    if _TABLES is None:
        _TABLES = _tables()
    bond_type, bond_dir, chiral = _TABLES
    FEATURE_STATS["molecules"] += 1
    if mol is None:
        FEATURE_STATS["unparsable"] += 1
        return None
    if mol.GetNumAtoms() == 0:
        FEATURE_STATS["empty"] += 1
        return None
    mapped = []
    atoms = []                                   # flat [z0, c0, z1, c1, ...]
    for i in range(mol.GetNumAtoms()):           # index loops and flat lists: ~2x faster than GetAtoms()
        a = mol.GetAtomWithIdx(i)
        z = a.GetAtomicNum()
        c, m = chiral[a.GetChiralTag()]
        if m:
            mapped.append(f"chiral_tag:{a.GetChiralTag().name}")
        atoms += (z - 1 if z > 0 else 118, c)
    src, dst, feats = [], [], []
    for k in range(mol.GetNumBonds()):
        b = mol.GetBondWithIdx(k)
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        (t, mt), (d, md) = bond_type[b.GetBondType()], bond_dir[b.GetBondDir()]
        if mt:
            mapped.append(f"bond_type:{b.GetBondType().name}")
        if md:
            mapped.append(f"bond_dir:{b.GetBondDir().name}")
        src += (i, j)                            # both directions, in the release's order
        dst += (j, i)
        feats += (t, d, t, d)
    if mapped:
        if strict:
            raise UnsupportedFeatureError(f"outside the release's vocabulary: {sorted(set(mapped))}")
        FEATURE_STATS["mapped_molecules"] += 1
        FEATURE_STATS.update(mapped)
    return MolGraph(x=torch.tensor(atoms, dtype=torch.long).view(-1, 2),
                    edge_index=torch.tensor(src + dst, dtype=torch.long).view(2, -1),
                    edge_attr=torch.tensor(feats, dtype=torch.long).view(-1, 2))


def smiles_to_graph(text: str, selfies: bool = False, strict: bool = False) -> MolGraph | None:
    """SMILES (or SELFIES with selfies=True) -> MolGraph, or None if it does not parse (counted).
    Parsed with rdkit's defaults (Chem.MolFromSmiles, sanitised), exactly as the release does."""
    if selfies:
        try:
            text = sf.decoder(text)
        except Exception:  # selfies raises DecoderError (and sometimes others) on malformed input
            FEATURE_STATS["molecules"] += 1
            FEATURE_STATS["selfies_undecodable"] += 1
            return None
    with rdBase.BlockLogs():  # failures are counted, not printed
        mol = Chem.MolFromSmiles(text) if text is not None else None
    return mol_to_graph(mol, strict=strict)


def selfies_to_graph(text: str, strict: bool = False) -> MolGraph | None:
    return smiles_to_graph(text, selfies=True, strict=strict)


def batch_graphs(graphs: list[MolGraph], device=None):
    """Block-diagonal batch -> (x (N, 2), edge_index (2, E) with node offsets, edge_attr (E, 2),
    n_atoms (G,) list)."""
    n_atoms = [g.num_nodes for g in graphs]
    n_edges = torch.tensor([g.edge_index.shape[1] for g in graphs])
    offsets = torch.tensor([0] + n_atoms[:-1]).cumsum(0)
    x = torch.cat([g.x for g in graphs])
    edge_index = torch.cat([g.edge_index for g in graphs], dim=1) + offsets.repeat_interleave(n_edges)
    edge_attr = torch.cat([g.edge_attr for g in graphs])
    return x.to(device), edge_index.to(device), edge_attr.to(device), n_atoms


# ----------------------------------------------------------------------------- the GIN (OGB style)

class AtomEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.atom_embedding_list = nn.ModuleList(nn.Embedding(n, dim) for n in ATOM_FEATURE_DIMS)

    def forward(self, x):  # (N, F) ints -> (N, D): sum of per-column lookups (only F=2 columns are fed)
        return sum(self.atom_embedding_list[i](x[:, i]) for i in range(x.shape[1]))


class BondEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.bond_embedding_list = nn.ModuleList(nn.Embedding(n, dim) for n in BOND_FEATURE_DIMS)

    def forward(self, e):  # (E, F) ints -> (E, D)
        return sum(self.bond_embedding_list[i](e[:, i]) for i in range(e.shape[1]))


class GINConv(nn.Module):
    """h_i' = MLP((1 + eps) h_i + sum_{j -> i} ReLU(h_j + bond_emb(e_ji)))  (OGB's GINConv)."""

    def __init__(self, dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.BatchNorm1d(2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.eps = nn.Parameter(torch.zeros(1))
        self.bond_encoder = BondEncoder(dim)

    def forward(self, h, edge_index, edge_attr):
        src, dst = edge_index                                         # messages flow src -> dst
        msg = F.relu(h[src] + self.bond_encoder(edge_attr))           # (E, D)
        agg = torch.zeros_like(h).index_add_(0, dst, msg)             # one scatter-add for the whole batch
        return self.mlp((1 + self.eps) * h + agg)


class GNN(nn.Module):  # MoleculeSTM's `molecule_node_model`
    def __init__(self, num_layer=GIN_LAYERS, dim=GIN_DIM, drop_ratio=GIN_DROPOUT):
        super().__init__()
        self.drop_ratio = drop_ratio
        self.atom_encoder = AtomEncoder(dim)
        self.gnns = nn.ModuleList(GINConv(dim) for _ in range(num_layer))
        self.batch_norms = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(num_layer))

    def forward(self, x, edge_index, edge_attr):  # -> (N, D) node embeddings, JK = last
        h = self.atom_encoder(x)
        for i, (conv, bn) in enumerate(zip(self.gnns, self.batch_norms)):
            h = bn(conv(h, edge_index, edge_attr))
            if i < len(self.gnns) - 1:
                h = F.relu(h)                                         # no ReLU after the last layer
            h = F.dropout(h, self.drop_ratio, self.training)
        return h


class GIN(nn.Module):
    """The frozen graph tower. state_dict keys are exactly the MoleculeSTM checkpoint's
    (`molecule_node_model.*`), so a converted checkpoint loads with an identity map. It stays in eval
    mode (BatchNorm running statistics, no dropout) and in fp32 whatever its parent is switched or
    cast to: the release runs the tower in fp32 and casts only the projected tokens."""

    def __init__(self):
        super().__init__()
        self.molecule_node_model = GNN()

    def train(self, mode=True):
        return super().train(False)

    def _apply(self, fn, recurse=True):
        # follow device moves (.to(device), .cuda()) but not dtype casts: read the target device off a probe
        probe = fn(torch.zeros(1, device=self.molecule_node_model.gnns[0].eps.device))
        return super()._apply(lambda t: t.to(device=probe.device), recurse)

    def forward(self, x, edge_index, edge_attr):
        dev = self.molecule_node_model.gnns[0].eps.device
        with torch.autocast(dev.type, enabled=False):
            return self.molecule_node_model(x, edge_index, edge_attr)

    @torch.no_grad()
    def encode(self, graphs: list[MolGraph]) -> list[torch.Tensor]:
        """-> one (n_atoms, 300) fp32 tensor per graph, all graphs in one batched pass."""
        dev = self.molecule_node_model.gnns[0].eps.device
        x, ei, ea, n = batch_graphs(graphs, dev)
        return list(self(x, ei, ea).split(n))


def random_gin(seed: int = 0) -> GIN:
    """OGB's init (xavier-uniform embeddings, torch-default Linear/BatchNorm, eps 0), seeded with
    `seed` without touching the caller's RNG. BatchNorm running stats are the defaults (mean 0, var 1)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gin = GIN()
        for emb in list(gin.molecule_node_model.atom_encoder.atom_embedding_list) + [
                e for c in gin.molecule_node_model.gnns for e in c.bond_encoder.bond_embedding_list]:
            nn.init.xavier_uniform_(emb.weight)
    return gin.requires_grad_(False).eval()


# ----------------------------------------------------------------------------- checkpoints

class GINCheckpointError(ValueError):
    """A graph-tower checkpoint whose tensors do not match MoleculeSTM's GIN exactly."""


def gin_expected_shapes() -> dict:
    return {k: tuple(v.shape) for k, v in GIN().state_dict().items()}


def check_gin_state_dict(sd: dict, source: str = "checkpoint") -> None:
    """Raise GINCheckpointError naming every missing, unexpected and mis-shaped tensor."""
    want = gin_expected_shapes()
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    shapes = [f"{k}: {tuple(sd[k].shape)} (expected {want[k]})" for k in sorted(set(sd) & set(want))
              if tuple(sd[k].shape) != want[k]]
    if not (missing or unexpected or shapes):
        return
    msg = [f"{source} is not a MoleculeSTM GIN (OGB layout, keys molecule_node_model.*):"]
    for what, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            msg.append(f"  {what} ({len(items)}): " + ", ".join(items[:12]) + (" ..." if len(items) > 12 else ""))
    if any("x_embedding1" in k or "edge_embedding1" in k for k in sd):
        msg.append("  hint: x_embedding1/edge_embedding1 are the Hu et al./GraphMVP layout, not MoleculeSTM's OGB GIN")
    elif unexpected and not any(k.startswith("molecule_node_model.") for k in sd):
        msg.append("  hint: no key starts with 'molecule_node_model.'; is this the GNN_graphpred state dict?")
    raise GINCheckpointError("\n".join(msg))


def load_gin(path: str | None = None, seed: int = 0) -> GIN:
    """A frozen, eval-mode fp32 GIN: from a converted safetensors file, or a seeded random init when
    path is None. Loading is strict: any key or shape mismatch raises GINCheckpointError."""
    if path is None:
        return random_gin(seed)
    if not os.path.exists(path):
        raise FileNotFoundError(f"graph tower checkpoint {path!r} not found")
    if not path.endswith(".safetensors"):
        raise GINCheckpointError(f"{path} is not a .safetensors file; convert a MoleculeSTM .pth once with "
                                 f"`python convert.py moleculestm {path} gin.safetensors`")
    try:
        sd = load_file(path)
    except (SafetensorError, OSError) as e:
        raise GINCheckpointError(f"cannot read {path}: {e}") from None
    check_gin_state_dict(sd, path)
    gin = GIN()
    gin.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    return gin.requires_grad_(False).eval()


# ----------------------------------------------------------------------------- fusion with the LLM

def attach_molecule(model, gin_path: str | None = None, seed: int = 0):
    """Give `model` a frozen graph tower (`model.graph_tower`, fp32, eval) and a trainable projector
    `model.mm_projector = Linear(300 -> hidden)` with bias (fp32, torch-default init from the global
    RNG), on the device of the model's embeddings. Returns the model."""
    emb = model.model.embed_tokens.weight
    model.graph_tower = load_gin(gin_path, seed).to(emb.device)
    model.mm_projector = nn.Linear(GIN_DIM, model.config.hidden_size, bias=True).to(emb.device)
    model.gin_source = gin_path or f"random init (seed {seed})"
    return model


def _graph_lists(graphs, n_placeholders):
    out = []
    for b, (g, n) in enumerate(zip(graphs, n_placeholders)):
        gl = [] if g is None else list(g) if isinstance(g, (list, tuple)) else [g]
        if any(x is None for x in gl):
            raise ValueError(f"sample {b}: a graph in its list is None (a molecule that did not parse?)")
        if len(gl) != n:
            raise ValueError(f"sample {b}: {n} molecule placeholder(s) ({MOL_TOKEN_ID}) in the text but "
                             f"{len(gl)} graph(s); a sample needs exactly one graph per placeholder")
        out.append(gl)
    return out


def embed_inputs(model, input_ids, graphs, labels=None, attention_mask=None, padding_side: str = "right"):
    """Token embeddings with each molecule placeholder (MOL_TOKEN_ID) replaced by that molecule's atom
    tokens, re-padded as one batch.

    input_ids: B unpadded sequences (lists or 1-D tensors), or a padded (B, T) tensor with its
        attention_mask (padding is stripped first, either side).
    graphs: B entries: None (text-only sample), a MolGraph, or a list of MolGraphs, one per placeholder
        in order. A placeholder without a graph, or a graph without a placeholder, is a ValueError.
    labels: optional, aligned with input_ids; graph positions and padding become IGNORE_INDEX.
    padding_side: "right" for training, "left" for generation (model.generate wants left padding).
    -> (inputs_embeds (B, L, D) in the LLM's dtype, attention_mask (B, L) long, labels (B, L) or None).
    Positions come from the mask (model.forward: cumsum - 1), so each sample counts from 0 either way.

    The GIN runs once over all graphs of the batch, in fp32 under no_grad; the projector (fp32,
    trainable) runs once on all atoms and its output is cast to the LLM dtype."""
    assert padding_side in ("left", "right"), padding_side
    embed_w = model.model.embed_tokens.weight
    dev, dtype = embed_w.device, embed_w.dtype
    if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2:
        if attention_mask is None:
            raise ValueError("a padded (B, T) input_ids tensor needs its attention_mask")
        keep = attention_mask.bool()
        input_ids = [row[k] for row, k in zip(input_ids, keep)]
        if labels is not None:
            labels = [row[k] for row, k in zip(labels, keep)]
    # bookkeeping on the CPU, then one host-to-device copy of all token ids
    ids = [torch.as_tensor(s, dtype=torch.long).cpu() for s in input_ids]
    B = len(ids)
    if len(graphs) != B:
        raise ValueError(f"{B} sequences but {len(graphs)} graph entries (use None for text-only samples)")
    if labels is not None:
        labels = [torch.as_tensor(s, dtype=torch.long).cpu() for s in labels]
        bad = [b for b in range(B) if labels[b].shape != ids[b].shape]
        if bad:
            raise ValueError(f"labels not aligned with input_ids for samples {bad}")
        labels = torch.cat(labels).to(dev).split([len(s) for s in ids])
    flat = torch.cat(ids)
    if ((flat < 0) & (flat != MOL_TOKEN_ID)).any():
        raise ValueError(f"negative token ids other than the molecule placeholder {MOL_TOKEN_ID} in input_ids")
    mol_pos = [(s == MOL_TOKEN_ID).nonzero().flatten().tolist() for s in ids]
    glists = _graph_lists(graphs, [len(p) for p in mol_pos])

    # all text tokens of the batch in one embedding call (placeholders looked up as id 0, then dropped)
    text = model.model.embed_tokens(flat.clamp(min=0).to(dev)).split([len(s) for s in ids])
    # all atoms of the batch: one GIN pass, one projector GEMM
    flat_graphs = [g for gl in glists for g in gl]
    if flat_graphs:
        if not hasattr(model, "graph_tower"):
            raise ValueError("the model has no graph tower: call molecule.attach_molecule(model) first")
        tower, proj = model.graph_tower, model.mm_projector
        h = torch.cat(tower.encode(flat_graphs))                     # (N_atoms, 300) fp32, no grad
        with torch.autocast(dev.type, enabled=False):
            atoms = proj(h.to(proj.weight.dtype)).to(dtype)          # (N_atoms, D)
        atoms = list(atoms.split([g.num_nodes for g in flat_graphs]))
    embs, labs = [], []
    k = 0
    for b in range(B):
        e_parts, l_parts, start = [], [], 0
        for p in mol_pos[b]:
            n = flat_graphs[k].num_nodes
            e_parts += [text[b][start:p], atoms[k]]
            if labels is not None:
                l_parts += [labels[b][start:p], torch.full((n,), IGNORE_INDEX, dtype=torch.long, device=dev)]
            start, k = p + 1, k + 1
        e_parts.append(text[b][start:])
        embs.append(torch.cat(e_parts) if len(e_parts) > 1 else e_parts[0])
        if labels is not None:
            l_parts.append(labels[b][start:])
            labs.append(torch.cat(l_parts))
    mask = pad_sequence([torch.ones(len(e), dtype=torch.long, device=dev) for e in embs], batch_first=True,
                        padding_value=0, padding_side=padding_side)
    inputs_embeds = pad_sequence(embs, batch_first=True, padding_value=0.0, padding_side=padding_side)
    if labels is not None:
        labs = pad_sequence(labs, batch_first=True, padding_value=IGNORE_INDEX, padding_side=padding_side)
    return inputs_embeds, mask, (labs if labels is not None else None)


# ----------------------------------------------------------------------------- CLI: bench

def _bench(n: int, batch: int, device: str = "cpu"):
    """Featurization (one CPU core) and GIN encoding throughput (one CPU thread, or a GPU), on rdkit's NCI
    first_5K molecules."""
    torch.set_num_threads(1)
    with open(os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")) as f:
        smiles = [line.split()[0] for line in f if line.strip()][:n]
    t = time.perf_counter()
    graphs = [smiles_to_graph(s) for s in smiles]
    t_feat = time.perf_counter() - t
    graphs = [g for g in graphs if g is not None]
    atoms = sum(g.num_nodes for g in graphs)
    gin = random_gin().to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    gin.encode(graphs[:batch])                                   # warm-up
    sync()
    t = time.perf_counter()
    for i in range(0, len(graphs), batch):
        gin.encode(graphs[i:i + batch])
    sync()
    t_batched = time.perf_counter() - t
    m = min(len(graphs), 500)
    t = time.perf_counter()
    for g in graphs[:m]:
        gin.encode([g])
    sync()
    t_single = (time.perf_counter() - t) * len(graphs) / m
    print(f"{len(smiles)} SMILES from rdkit NCI/first_5K.smi ({len(graphs)} parsed, {atoms / len(graphs):.1f} "
          f"heavy atoms each), 1 CPU thread, GIN on {device}, torch {torch.__version__}")
    print(f"featurize (SMILES -> graph):        {len(smiles) / t_feat:9.0f} molecules/s")
    print(f"GIN encode, batched ({batch}/batch):     {len(graphs) / t_batched:9.0f} molecules/s")
    print(f"GIN encode, one molecule at a time: {len(graphs) / t_single:9.0f} molecules/s "
          f"(timed on {m})")
    print(f"featurize + batched encode:         {len(graphs) / (t_feat + t_batched):9.0f} molecules/s")
    print(f"mapped features: {dict((k, v) for k, v in FEATURE_STATS.items() if ':' in k)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="featurization and GIN throughput on one CPU core")
    b.add_argument("--n", type=int, default=5000, help="molecules from rdkit's NCI/first_5K.smi")
    b.add_argument("--batch", type=int, default=64, help="molecules per batched GIN call")
    b.add_argument("--device", default="cpu", help="where the GIN runs (featurization is always one CPU core)")
    args = ap.parse_args(argv)
    _bench(args.n, args.batch, args.device)


if __name__ == "__main__":
    main()
