"""molecule.py: featurization facts on hand-checked molecules, the batched GIN against a dense
per-molecule reference, checkpoint conversion and strict loading, and the splice into the tiny LLM
(positions, padding sides, labels, generate, gradients)."""
import pytest
import selfies
import torch
import torch.nn.functional as F
from rdkit import Chem
from safetensors.torch import save_file

import convert
import moge
import molecule as M
from tokenizer import IGNORE_INDEX, MOL_TOKEN_ID
from model import load_model

# ----------------------------------------------------------------------------- featurization


def edges(g):
    """{(src, dst): [bond type, direction]} of a graph."""
    return {(int(s), int(d)): f.tolist() for s, d, f in zip(g.edge_index[0], g.edge_index[1], g.edge_attr)}


def test_ethanol_heavy_atoms_both_directions_no_self_loops():
    g = M.smiles_to_graph("CCO")
    assert g.x.tolist() == [[5, 0], [5, 0], [7, 0]]               # Z - 1, no chirality; no hydrogens
    assert edges(g) == {(0, 1): [0, 0], (1, 0): [0, 0], (1, 2): [0, 0], (2, 1): [0, 0]}
    assert g.x.dtype == g.edge_index.dtype == g.edge_attr.dtype == torch.long
    assert M.smiles_to_graph("[H]C([H])([H])O").num_nodes == 2     # explicit Hs go, as with rdkit defaults


def test_aromatic_and_double_and_triple_bonds():
    g = M.smiles_to_graph("c1ccccc1")
    assert g.num_nodes == 6 and g.edge_index.shape == (2, 12)
    assert all(f == [3, 0] for f in edges(g).values())            # aromatic -> 3
    assert not (g.edge_index[0] == g.edge_index[1]).any()
    g = M.smiles_to_graph("C=CC#N")
    assert edges(g)[(0, 1)] == [1, 0] and edges(g)[(2, 3)] == [2, 0] and edges(g)[(1, 2)] == [0, 0]
    # aspirin: 13 heavy atoms, 13 bonds, 6 of them aromatic
    g = M.smiles_to_graph("CC(=O)Oc1ccccc1C(=O)O")
    assert g.num_nodes == 13 and g.edge_index.shape[1] == 26
    assert int((g.edge_attr[:, 0] == 3).sum()) == 12


def test_chirality_and_bond_direction():
    assert M.smiles_to_graph("C[C@H](N)O").x[:, 1].tolist() == [0, 2, 0, 0]     # @ -> CCW -> 2
    assert M.smiles_to_graph("C[C@@H](N)O").x[:, 1].tolist() == [0, 1, 0, 0]    # @@ -> CW -> 1
    g = M.smiles_to_graph("F/C=C/F")
    assert edges(g)[(0, 1)] == [0, 1] and edges(g)[(1, 2)] == [1, 0] and edges(g)[(2, 3)] == [0, 1]
    g = M.smiles_to_graph("F/C=C\\F")
    assert edges(g)[(0, 1)] == [0, 1] and edges(g)[(2, 3)] == [0, 2]          # ENDDOWNRIGHT -> 2


def test_charged_multifragment_wildcard():
    g = M.smiles_to_graph("C[N+](C)(C)C.[Cl-]")                   # charge is not a feature: Z only
    assert g.x[:, 0].tolist() == [5, 6, 5, 5, 5, 16]
    assert g.edge_index.shape == (2, 8) and not (g.edge_index == 5).any()   # Cl- has no bond
    g = M.smiles_to_graph("[Na+].[Cl-]")
    assert g.x.tolist() == [[10, 0], [16, 0]]
    assert g.edge_index.shape == (2, 0) and g.edge_attr.shape == (0, 2)      # bond-less, as the release
    assert M.smiles_to_graph("*CC").x[0].tolist() == [118, 0]                # wildcard -> 118


def test_unsupported_features_are_mapped_counted_or_rejected():
    M.reset_feature_stats()
    g = M.smiles_to_graph("[NH3]->[Pt]")                          # dative -> single, counted
    assert g.x[:, 0].tolist() == [6, 77] and edges(g) == {(0, 1): [0, 0], (1, 0): [0, 0]}
    g = M.smiles_to_graph("F[Po@SP1](Cl)(Br)I")                   # square planar -> CHI_OTHER (3)
    assert g.x[:, 1].tolist() == [0, 3, 0, 0, 0]
    mol = Chem.MolFromSmiles("CC=CC")
    mol.GetBondWithIdx(1).SetBondDir(Chem.BondDir.EITHERDOUBLE)
    g = M.mol_to_graph(mol)                                        # EITHERDOUBLE -> NONE
    assert edges(g)[(1, 2)] == [1, 0]
    s = M.FEATURE_STATS
    assert s["bond_type:DATIVE"] == 1 and s["chiral_tag:CHI_SQUAREPLANAR"] == 1
    assert s["bond_dir:EITHERDOUBLE"] == 1 and s["mapped_molecules"] == 3 and s["molecules"] == 3
    with pytest.raises(M.UnsupportedFeatureError, match="DATIVE"):
        M.smiles_to_graph("[NH3]->[Pt]", strict=True)             # the release's behaviour, on request


def test_unparsable_and_selfies():
    M.reset_feature_stats()
    assert M.smiles_to_graph("C1CC") is None                      # unclosed ring
    assert M.smiles_to_graph("") is None
    assert M.selfies_to_graph("[Xyz]") is None
    assert dict(M.FEATURE_STATS) == {"molecules": 3, "unparsable": 1, "empty": 1, "selfies_undecodable": 1}
    a, b = M.selfies_to_graph(selfies.encoder("CC(=O)Oc1ccccc1C(=O)O")), M.smiles_to_graph("CC(=O)Oc1ccccc1C(=O)O")
    assert a.x.tolist() == b.x.tolist() and edges(a) == edges(b)


# ----------------------------------------------------------------------------- the GIN

MOLS = ["CC(=O)Oc1ccccc1C(=O)O", "[Na+].[Cl-]", "C", "F/C=C/F", "C[C@H](N)O.O", "c1ccc2[nH]ccc2c1",
        "[NH3]->[Pt](Cl)Cl", "CC#N"]


def perturbed_gin(seed=1):
    """A random GIN with non-trivial eps and BatchNorm running statistics, so every term is tested."""
    gin = M.random_gin(seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in gin.state_dict().items():
            if name.endswith("eps"):
                t.uniform_(-0.5, 0.5, generator=g)
            elif name.endswith("running_mean"):
                t.normal_(0, 0.1, generator=g)
            elif name.endswith("running_var"):
                t.uniform_(0.5, 2.0, generator=g)
            elif t.dim() == 1 and t.is_floating_point():              # BatchNorm affine
                t.add_(torch.randn(t.shape, generator=g) * 0.1)
    return gin


def dense_reference(gin, graph):
    """The same math for one molecule in float64 with a dense adjacency A[i, j] = 1 for an edge j -> i
    and a dense (N, N, D) bond-embedding tensor; Linear/BatchNorm written out by hand."""
    sd = {k: v.double() for k, v in gin.state_dict().items()}
    p = "molecule_node_model."
    N = graph.num_nodes
    h = sum(sd[f"{p}atom_encoder.atom_embedding_list.{c}.weight"][graph.x[:, c]] for c in range(2))
    A = torch.zeros(N, N, dtype=torch.float64)
    A[graph.edge_index[1], graph.edge_index[0]] = 1.0

    def bn(x, q):
        x = (x - sd[q + "running_mean"]) / torch.sqrt(sd[q + "running_var"] + 1e-5)   # BatchNorm1d eps 1e-5
        return x * sd[q + "weight"] + sd[q + "bias"]

    for layer in range(5):
        q = f"{p}gnns.{layer}."
        E = torch.zeros(N, N, 300, dtype=torch.float64)
        e = sum(sd[f"{q}bond_encoder.bond_embedding_list.{c}.weight"][graph.edge_attr[:, c]] for c in range(2)) \
            if graph.edge_attr.shape[0] else torch.zeros(0, 300, dtype=torch.float64)
        E[graph.edge_index[1], graph.edge_index[0]] = e
        agg = (torch.relu(h[None, :, :] + E) * A[:, :, None]).sum(1)           # sum_j A_ij relu(h_j + e_ji)
        z = (1 + sd[q + "eps"]) * h + agg
        z = z @ sd[q + "mlp.0.weight"].T + sd[q + "mlp.0.bias"]
        z = torch.relu(bn(z, q + "mlp.1."))
        z = z @ sd[q + "mlp.3.weight"].T + sd[q + "mlp.3.bias"]
        h = bn(z, f"{p}batch_norms.{layer}.")
        if layer < 4:
            h = torch.relu(h)
    return h


def test_batched_gin_matches_dense_reference():
    gin = perturbed_gin()
    graphs = [M.smiles_to_graph(s) for s in MOLS]
    out = gin.encode(graphs)
    assert [o.shape for o in out] == [(g.num_nodes, 300) for g in graphs]
    for s, g, o in zip(MOLS, graphs, out):
        ref = dense_reference(gin, g)
        assert ref.abs().max() > 0.1, s                              # not a vacuous comparison
        torch.testing.assert_close(o.double(), ref, atol=1e-5, rtol=1e-5, msg=lambda m: f"{s}: {m}")
    # batching is exact: the same molecule alone gives the same rows
    torch.testing.assert_close(gin.encode([graphs[0]])[0], out[0], atol=1e-6, rtol=0)


def test_gin_is_frozen_eval_and_fp32():
    gin = M.random_gin()
    assert sum(p.numel() for p in gin.parameters()) == 1_884_905
    assert not any(p.requires_grad for p in gin.parameters())
    parent = torch.nn.Sequential(gin)
    parent.train()
    assert not gin.training and not any(m.training for m in gin.modules())  # BN running stats, no dropout
    parent.to(torch.bfloat16)
    assert all(t.dtype == torch.float32 for t in gin.state_dict().values() if t.is_floating_point())
    g = [M.smiles_to_graph("CCO")]
    torch.testing.assert_close(gin.encode(g)[0], M.random_gin().encode(g)[0], atol=0, rtol=0)
    # the seeded init leaves the caller's RNG alone
    torch.manual_seed(123)
    a = torch.rand(1)
    torch.manual_seed(123)
    M.random_gin(7)
    assert torch.equal(torch.rand(1), a)


# ----------------------------------------------------------------------------- checkpoints

def release_state_dict(seed=0):
    """A fake MoleculeSTM GNN_graphpred state dict: the checkpoint's key names and shapes,
    written out independently of molecule.py, plus the graph_pred_linear head the release drops."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    p = "molecule_node_model."
    sd = {f"{p}atom_encoder.atom_embedding_list.{i}.weight": r(n, 300)
          for i, n in enumerate([119, 4, 12, 12, 10, 6, 6, 2, 2])}
    for i in range(5):
        q = f"{p}gnns.{i}."
        sd[q + "eps"] = r(1)
        sd[q + "mlp.0.weight"], sd[q + "mlp.0.bias"] = r(600, 300), r(600)
        sd[q + "mlp.1.weight"], sd[q + "mlp.1.bias"] = r(600), r(600)
        sd[q + "mlp.1.running_mean"], sd[q + "mlp.1.running_var"] = r(600), r(600).abs() + 0.5
        sd[q + "mlp.1.num_batches_tracked"] = torch.tensor(1000)
        sd[q + "mlp.3.weight"], sd[q + "mlp.3.bias"] = r(300, 600), r(300)
        for j, n in enumerate([5, 6, 2]):
            sd[f"{q}bond_encoder.bond_embedding_list.{j}.weight"] = r(n, 300)
        b = f"{p}batch_norms.{i}."
        sd[b + "weight"], sd[b + "bias"], sd[b + "running_mean"] = r(300), r(300), r(300)
        sd[b + "running_var"], sd[b + "num_batches_tracked"] = r(300).abs() + 0.5, torch.tensor(1000)
    sd["graph_pred_linear.weight"], sd["graph_pred_linear.bias"] = r(1, 300), r(1)
    return sd


def test_release_checkpoint_converts_and_loads_strictly(tmp_path, capsys):
    sd = release_state_dict()
    torch.save(sd, tmp_path / "moleculestm.pth")
    convert.main(["moleculestm", str(tmp_path / "moleculestm.pth"), str(tmp_path / "gin.safetensors")])
    assert "1,884,905 parameters" in capsys.readouterr().out
    gin = M.load_gin(str(tmp_path / "gin.safetensors"))
    got = gin.state_dict()
    assert set(got) == set(sd) - {"graph_pred_linear.weight", "graph_pred_linear.bias"}
    assert all(torch.equal(got[k], sd[k]) for k in got)
    assert not gin.training and not any(p.requires_grad for p in gin.parameters())
    # a DDP "module." prefix is stripped too
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "ddp.pth")
    convert.convert_moleculestm(str(tmp_path / "ddp.pth"), str(tmp_path / "ddp.safetensors"))
    assert torch.equal(M.load_gin(str(tmp_path / "ddp.safetensors")).state_dict()[k := next(iter(got))], got[k])
    # ... and so is a state dict saved from the bare GNN (no molecule_node_model. prefix)
    p = "molecule_node_model."
    torch.save({k.removeprefix(p): v for k, v in sd.items() if k.startswith(p)}, tmp_path / "bare.pth")
    convert.convert_moleculestm(str(tmp_path / "bare.pth"), str(tmp_path / "bare.safetensors"))
    assert set(M.load_gin(str(tmp_path / "bare.safetensors")).state_dict()) == set(got)


def test_wrong_checkpoints_give_named_errors(tmp_path):
    sd = release_state_dict()
    bad = dict(sd)
    del bad["molecule_node_model.gnns.3.eps"]
    bad["molecule_node_model.gnns.3.epsilon"] = torch.zeros(1)
    bad["molecule_node_model.batch_norms.0.weight"] = torch.zeros(299)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(M.GINCheckpointError) as e:
        convert.convert_moleculestm(str(tmp_path / "bad.pth"), str(tmp_path / "bad.safetensors"))
    msg = str(e.value)
    assert "missing (1): molecule_node_model.gnns.3.eps" in msg
    assert "unexpected (1): molecule_node_model.gnns.3.epsilon" in msg
    assert "batch_norms.0.weight: (299,) (expected (300,))" in msg
    assert not (tmp_path / "bad.safetensors").exists()
    # the older GraphMVP layout is recognised by name
    torch.save({"x_embedding1.weight": torch.zeros(120, 300), "x_embedding2.weight": torch.zeros(3, 300)},
               tmp_path / "graphmvp.pth")
    with pytest.raises(M.GINCheckpointError, match="GraphMVP"):
        convert.convert_moleculestm(str(tmp_path / "graphmvp.pth"), str(tmp_path / "x.safetensors"))
    # CLI: a clean error, no traceback
    with pytest.raises(SystemExit, match="missing"):
        convert.main(["moleculestm", str(tmp_path / "bad.pth"), str(tmp_path / "bad.safetensors")])
    # load_gin is strict too, and refuses an unconverted .pth
    extra = {k: v for k, v in sd.items()}                        # graph_pred_linear not dropped
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(M.GINCheckpointError, match="graph_pred_linear"):
        M.load_gin(str(tmp_path / "extra.safetensors"))
    with pytest.raises(M.GINCheckpointError, match="python convert.py moleculestm"):
        M.load_gin(str(tmp_path / "bad.pth"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(M.GINCheckpointError, match="cannot read"):
        M.load_gin(str(tmp_path / "junk.safetensors"))
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(M.GINCheckpointError, match="cannot read"):
        convert.convert_moleculestm(str(tmp_path / "junk.pth"), str(tmp_path / "j.safetensors"))


# ----------------------------------------------------------------------------- fusion with the LLM

@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model("tiny")
    model.requires_grad_(False)                                   # the LLM is frozen in training
    torch.manual_seed(0)
    M.attach_molecule(model)
    return model, tok


def batch(tok):
    """Three samples: aspirin (13 atoms), text only, a 2-atom salt; different lengths."""
    specs = [("<mol>\nWhat is this?", "aspirin", "CC(=O)Oc1ccccc1C(=O)O"),
             ("Name a solvent.", "water", None),
             ("Describe <mol> briefly.", "table salt", "[Na+].[Cl-]")]
    ids, labels, graphs = [], [], []
    for user, answer, smi in specs:
        i, lab = tok.encode_chat(user, answer)
        ids.append(i)
        labels.append(lab)
        graphs.append(M.smiles_to_graph(smi) if smi else None)
    return ids, labels, graphs


@pytest.mark.parametrize("side", ["right", "left"])
def test_splice_puts_atoms_at_placeholder_and_shifts_the_rest(tiny, side):
    model, tok = tiny
    ids, labels, graphs = batch(tok)
    emb, mask, lab = M.embed_inputs(model, ids, graphs, labels, padding_side=side)
    lengths = [len(i) - 1 + g.num_nodes if g else len(i) for i, g in zip(ids, graphs)]
    assert emb.shape == (3, max(lengths), model.config.hidden_size) and emb.dtype == torch.float32
    assert mask.sum(1).tolist() == lengths
    for b in range(3):
        L, T = lengths[b], emb.shape[1]
        rows = slice(0, L) if side == "right" else slice(T - L, T)
        e, m, y = emb[b, rows], mask[b], lab[b, rows]
        assert m[rows].all() and not m.sum() > L
        pad = lab[b, L:] if side == "right" else lab[b, :T - L]
        assert (pad == IGNORE_INDEX).all()
        t_ids = torch.tensor(ids[b])
        if graphs[b] is None:
            torch.testing.assert_close(e, model.embed(t_ids), atol=0, rtol=0)
            assert y.tolist() == labels[b]
            continue
        p, n = ids[b].index(MOL_TOKEN_ID), graphs[b].num_nodes
        atoms = model.mm_projector(model.graph_tower.encode([graphs[b]])[0])
        torch.testing.assert_close(e[:p], model.embed(t_ids[:p]), atol=0, rtol=0)
        torch.testing.assert_close(e[p:p + n], atoms, atol=1e-6, rtol=1e-5)  # exactly n_atoms rows (GEMM rounding)
        torch.testing.assert_close(e[p + n:], model.embed(t_ids[p + 1:]), atol=0, rtol=0)   # the rest shifted
        assert (y[p:p + n] == IGNORE_INDEX).all()
        assert y[:p].tolist() == labels[b][:p] and y[p + n:].tolist() == labels[b][p + 1:]


def test_padded_tensor_input_matches_list_input(tiny):
    model, tok = tiny
    ids, labels, graphs = batch(tok)
    T = max(map(len, ids))
    pad = lambda rows, v: torch.tensor([[v] * (T - len(r)) + r for r in rows])  # noqa: E731 (left padded)
    am = pad([[1] * len(r) for r in ids], 0)
    a = M.embed_inputs(model, pad(ids, 0), graphs, pad(labels, -100), attention_mask=am)
    b = M.embed_inputs(model, ids, graphs, labels)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_mismatched_placeholders_and_graphs_are_errors(tiny):
    model, tok = tiny
    ids, labels, graphs = batch(tok)
    with pytest.raises(ValueError, match="sample 1: 0 molecule placeholder.*1 graph"):
        M.embed_inputs(model, ids, [graphs[0], graphs[0], graphs[2]])
    with pytest.raises(ValueError, match="sample 0: 1 molecule placeholder.*0 graph"):
        M.embed_inputs(model, ids, [None, None, graphs[2]])
    with pytest.raises(ValueError, match="3 sequences but 2 graph"):
        M.embed_inputs(model, ids, graphs[:2])
    with pytest.raises(ValueError, match="None"):
        M.embed_inputs(model, ids, [[None], None, graphs[2]])
    with pytest.raises(ValueError, match="negative token ids"):
        M.embed_inputs(model, [ids[1] + [-100]], [None])
    two = [ids[0][:3] + [MOL_TOKEN_ID] + ids[0][3:]]               # two placeholders take a list of two graphs
    emb, mask, _ = M.embed_inputs(model, two, [[graphs[0], graphs[2]]])
    assert mask.sum() == len(two[0]) - 2 + 13 + 2


@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_logits_equal_per_sample_logits(tiny, side):
    # positions come from the attention mask: padding on either side must not change a sample's logits
    model, tok = tiny
    ids, labels, graphs = batch(tok)
    emb, mask, _ = M.embed_inputs(model, ids, graphs, padding_side=side)
    with torch.no_grad():
        logits = model(inputs_embeds=emb, attention_mask=mask)
        for b in range(3):
            e1, m1, _ = M.embed_inputs(model, [ids[b]], [graphs[b]])
            alone = model(inputs_embeds=e1, attention_mask=m1)[0]
            got = logits[b][mask[b].bool()]
            torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-5)


def test_generate_from_spliced_embeddings(tiny):
    model, tok = tiny
    ids, _, graphs = batch(tok)
    prompts = [tok.encode_chat(u)[0] for u in ["<mol>\nWhat is this?", "Name a solvent.", "Describe <mol> briefly."]]
    emb, mask, _ = M.embed_inputs(model, prompts, graphs, padding_side="left")
    out = model.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=6)
    assert len(out) == 3 and all(len(o) > 0 for o in out)
    for b in range(3):                                            # batched prefill == one at a time
        e1, m1, _ = M.embed_inputs(model, [prompts[b]], [graphs[b]], padding_side="left")
        assert model.generate(inputs_embeds=e1, attention_mask=m1, max_new_tokens=6)[0] == out[b]


def test_gradients_reach_projector_only(tiny):
    model, tok = tiny
    ids, labels, graphs = batch(tok)
    model.graph_tower.requires_grad_(True)       # even if someone unfreezes it, the tower runs under no_grad
    try:
        model.train()
        assert not model.graph_tower.training
        emb, mask, lab = M.embed_inputs(model, ids, graphs, labels)
        logits = model(inputs_embeds=emb, attention_mask=mask)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), lab[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
        loss.backward()
        assert model.mm_projector.weight.grad is not None and model.mm_projector.weight.grad.abs().sum() > 0
        assert model.mm_projector.bias.grad.abs().sum() > 0
        assert all(p.grad is None for p in model.graph_tower.parameters())
        assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("mm_projector"))
    finally:
        model.graph_tower.requires_grad_(False)
        model.eval()
        model.zero_grad(set_to_none=True)


def test_bf16_llm_keeps_fp32_tower_and_casts_tokens():
    model, tok = load_model("tiny", dtype=torch.bfloat16)
    M.attach_molecule(model)
    model.to(torch.bfloat16)                                       # a later blanket cast leaves the tower fp32
    assert model.graph_tower.molecule_node_model.gnns[0].mlp[0].weight.dtype == torch.float32
    ids, labels, graphs = batch(tok)
    emb, mask, lab = M.embed_inputs(model, ids, graphs, labels)
    assert emb.dtype == torch.bfloat16
    assert torch.isfinite(model(inputs_embeds=emb, attention_mask=mask).float()).all()


def test_gradients_reach_projector_and_adapters_with_moge():
    model, tok = load_model("tiny")
    torch.manual_seed(0)
    M.attach_molecule(model)
    moge.attach_adapters(model, moge.MoGEConfig(recipe="moge", r=4))   # tiny: layer 1 becomes MoGE
    model.train()
    ids, labels, graphs = batch(tok)
    emb, mask, lab = M.embed_inputs(model, ids, graphs, labels)
    logits = model(inputs_embeds=emb, attention_mask=mask)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), lab[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
    (loss + 0.01 * moge.aux_loss(model)).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(moge.trainable_parameters(model))
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["mm_projector.weight"].abs().sum() > 0
    assert all(grads[n] is not None for n in trainable)                # adapters, routers, GAL scalars
    assert any(grads[n].abs().sum() > 0 for n in trainable if "lora_B" in n or "_B" in n)
    assert all(grads[n] is None for n in grads if n not in trainable)  # frozen GIN and LLM bases
    assert not any(n.startswith("graph_tower") for n in trainable)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_splice_forward_generate():
    model, tok = load_model("tiny", device="cuda", dtype=torch.bfloat16)
    torch.manual_seed(0)
    M.attach_molecule(model)
    tower = model.graph_tower.molecule_node_model
    assert tower.gnns[0].eps.device.type == "cuda" and tower.gnns[0].eps.dtype == torch.float32
    ids, labels, graphs = batch(tok)
    emb, mask, lab = M.embed_inputs(model, ids, graphs, labels)
    assert emb.device.type == "cuda" and emb.dtype == torch.bfloat16 and lab.device.type == "cuda"
    # the GIN gives the same atoms on the GPU as on the CPU (fp32 both)
    cpu = M.random_gin().encode(graphs[:1])[0]
    torch.testing.assert_close(model.graph_tower.encode(graphs[:1])[0].cpu(), cpu, atol=1e-4, rtol=1e-4)
    assert torch.isfinite(model(inputs_embeds=emb, attention_mask=mask).float()).all()
    prompts = [tok.encode_chat(u)[0] for u in ["<mol>\nWhat is this?", "Name a solvent.", "Describe <mol> briefly."]]
    e, m, _ = M.embed_inputs(model, prompts, graphs, padding_side="left")
    assert len(model.generate(inputs_embeds=e, attention_mask=m, max_new_tokens=4)) == 3
