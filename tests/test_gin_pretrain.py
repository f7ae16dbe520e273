"""gin_pretrain.py: the masking of a batch (hand-counted), attribute-masking training that lowers the masked-atom
loss, weights that load strictly as MoleculeSTM's GIN layout, and train.py --gin pretrained reading the cached file."""
import json

import torch

import checkpoint
import gin_pretrain as G
import molecule
import train

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "CCN(CC)CC", "ClCCCl", "OC(=O)CCC(=O)O", "CC#N",
          "c1ccncc1", "CS(=O)C", "FC(F)(F)c1ccccc1", "NCCO", "O=C1CCCCC1"]


def test_mask_atoms_hand_counted():
    x = torch.stack([torch.arange(15) % 7, torch.arange(15) % 3], 1)       # (15, 2): 4 + 10 + 1 atoms
    masked, idx = G.mask_atoms(x, [4, 10, 1], torch.Generator().manual_seed(0))
    per_mol = [int(((idx >= a) & (idx < b)).sum()) for a, b in ((0, 4), (4, 14), (14, 15))]
    assert per_mol == [1, 2, 1]                    # max(1, round(0.15 n)): 0.6 -> 1, 1.5 -> 2, 0.15 -> 1
    assert (masked[idx, 0] == G.MASK).all() and G.MASK == 118
    keep = torch.ones(15, dtype=torch.bool)
    keep[idx] = False
    assert torch.equal(masked[keep], x[keep]) and torch.equal(masked[:, 1], x[:, 1])  # chirality never masked


def test_pretraining_lowers_the_masked_loss_and_loads_strictly(tmp_path):
    graphs = G.graphs_of(SMILES * 4)
    heads = []
    gin = G.pretrain(graphs, max_steps=60, batch_size=16, head_out=heads, log=lambda *a: None)
    gen = torch.Generator().manual_seed(5)
    gnn = gin.molecule_node_model
    with torch.no_grad():
        after = G.masked_loss(gnn, heads[0], graphs, gen)[0]
        untrained = torch.nn.Linear(molecule.GIN_DIM, molecule.ATOM_FEATURE_DIMS[0])
        before = G.masked_loss(molecule.random_gin(0).molecule_node_model, untrained, graphs, gen)[0]
    assert after < 0.5 * before
    path = tmp_path / G.FILE
    G.save(gin, str(path))
    loaded = molecule.load_gin(str(path))          # strict: MoleculeSTM's keys and shapes
    assert loaded.state_dict().keys() == molecule.random_gin(0).state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), gin.state_dict().values()))
    assert not torch.equal(loaded.state_dict()["molecule_node_model.gnns.0.mlp.0.weight"],
                           molecule.random_gin(0).state_dict()["molecule_node_model.gnns.0.mlp.0.weight"])


def test_train_py_gin_pretrained_reads_the_cache(tiny_data, train_args, tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIMOL_CACHE", str(tmp_path / "cache"))
    gin = G.pretrain(G.graphs_of(SMILES), max_steps=2, batch_size=6, log=lambda *a: None)
    G.save(gin, G.default_path())
    out = tmp_path / "out"
    train.main(train_args(tiny_data, out, "--max-steps", 1, "--gin", "pretrained", "--prefetch", 0))
    meta = json.load(open(checkpoint.steps(str(out))[-1] + "/meta.json"))
    assert meta["args"]["gin"] == G.default_path()
