"""demo_data.py's package sources: QM9 rows (qm9pack) read and converted, PubChem IUPAC rows (chemicals)
filtered by InChIKey, bad rows skipped and counted (the built demo itself: tests/test_data.py).
Expected values are QM9's published numbers (Ramakrishnan et al. 2014) and hand-written rows."""
import collections
import csv
import io
import json
import os

import numpy as np
import pytest
import selfies
from rdkit import Chem

import demo_data


def _qm9_lines(indices, files=("qm9_part1.csv",)):
    """The header and the real lines of the given QM9 indices, as shipped."""
    want = {f'"dsgdb9nsd_{i:06d}.xyz"' for i in indices}
    out = []
    for name in files:
        with open(demo_data._package_file("qm9pack", "data", name), encoding="utf-8") as f:
            header = f.readline()
            out = out or [header]
            for line in f:
                if line.split(",", 1)[0] in want:
                    out.append(line)
                    if len(out) == len(want) + 1:
                        return out
    return out


def test_qm9_rows_read_and_converted(tmp_path):
    lines = _qm9_lines([1, 2, 8226])
    bad_smiles = lines[1].replace(',"C","InChI', ',"C1CC","InChI', 1)      # an unclosed ring
    p = tmp_path / "qm9_test.csv"
    p.write_text("".join(lines + [bad_smiles]))
    skipped = collections.Counter()
    rows = {r["index"]: r for r in demo_data.qm9_rows([str(p)], skipped=skipped)}
    assert sorted(rows) == [1, 2, 8226]
    assert skipped == {"unparsable SMILES": 1}
    # QM9 (B3LYP/6-31G(2df,p), Hartree): methane, ammonia, 2-(oxetan-2-yl)acetamide
    for i, smi, homo, lumo, gap in [(1, "C", -0.3877, 0.1171, 0.5048), (2, "N", -0.2570, 0.0829, 0.3399),
                                    (8226, "NC(=O)CC1CCO1", -0.2359, 0.0340, 0.2699)]:
        r = rows[i]
        assert r["canonical"] == Chem.MolToSmiles(Chem.MolFromSmiles(smi))
        assert (r["HOMO_au"], r["LUMO_au"], r["HOMO_LUMO_gap_au"]) == pytest.approx((homo, lumo, gap), abs=1e-9)


def test_qm9_rows_value_not_a_number_is_skipped(tmp_path):
    header, methane = _qm9_lines([1])
    k = next(csv.reader([header])).index("HOMO_au")
    row = next(csv.reader([methane]))
    row[k] = "n/a"
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    p = tmp_path / "q.csv"
    p.write_text(header + methane + buf.getvalue())
    skipped = collections.Counter()
    rows = list(demo_data.qm9_rows([str(p)], skipped=skipped))
    assert len(rows) == 1 and skipped == {"value not a number": 1}


def test_qm9_subset_is_seeded(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text("".join(_qm9_lines(range(1, 40))))
    a = [r["index"] for r in demo_data.qm9_rows([str(p)], 10, np.random.default_rng(3))]
    b = [r["index"] for r in demo_data.qm9_rows([str(p)], 10, np.random.default_rng(3))]
    assert a == b and len(a) == 10 and len(set(a)) == 10


def test_pubchem_rows_kept_only_where_the_inchikey_matches(tmp_path):
    with open(demo_data._package_file("chemicals", *demo_data.PUBCHEM_TSV), encoding="utf-8") as f:
        real = [f.readline() for _ in range(3)]  # CIDs 7, 15, 19 as shipped
    cid7 = real[0].split("\t")
    wrong_key = cid7.copy()
    wrong_key[0], wrong_key[6] = "900001", "GLDQAMYCGOIJDV-UHFFFAOYSA-N"   # 2,3-dihydroxybenzoic acid's key
    unparsable = cid7.copy()
    unparsable[0], unparsable[4] = "900002", "C1CC(("
    no_name = cid7.copy()
    no_name[0], no_name[7] = "900003", ""
    p = tmp_path / "ids.tsv"
    p.write_text("".join(real) + "".join("\t".join(r) for r in (wrong_key, unparsable, no_name)))
    skipped = collections.Counter()
    rows = list(demo_data.pubchem_rows(str(p), skipped=skipped))
    assert [r["cid"] for r in rows] == ["7", "15", "19"]
    assert skipped == {"InChIKey differs from the stored one": 1, "unparsable SMILES": 1, "no IUPAC name": 1}
    r7 = rows[0]
    assert r7["name"] == "9-ethylpurin-6-amine"
    assert r7["canonical"] == Chem.MolToSmiles(Chem.MolFromSmiles("CCN1C=NC2=C1N=CN=C2N"))
    assert Chem.MolToSmiles(Chem.MolFromSmiles(selfies.decoder(r7["selfies"]))) == r7["canonical"]
    assert rows[2]["name"] == "2,3-bis(oxidanyl)benzoic acid"  # PubChem's Lexichem style, as shipped


def test_pubchem_rows_stop_after_n():
    tsv = demo_data._package_file("chemicals", *demo_data.PUBCHEM_TSV)
    rows = list(demo_data.pubchem_rows(tsv, 25, np.random.default_rng(0)))
    assert len(rows) == 25
    for r in rows[:10]:  # each kept row: its SMILES really is the stored structure
        assert Chem.MolToInchiKey(Chem.MolFromSmiles(r["canonical"])) != ""


def test_an_older_demo_is_rebuilt(tmp_path, monkeypatch):
    """demo_data.ensure_demo: a demo folder from an older recipe (e.g. the GFN2-xTB one) is moved aside and rebuilt."""
    root = tmp_path / "demo"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"tasks": {}, "left_out": {"iupac": "old"}}))
    (root / "stale.json").write_text("[]")
    built = []

    def fake_build(out):
        os.makedirs(out)
        with open(os.path.join(out, "manifest.json"), "w") as f:
            json.dump({"recipe": demo_data.RECIPE, "tasks": {}, "left_out": {}}, f)
        built.append(out)

    monkeypatch.setattr(demo_data, "build_demo", fake_build)
    demo_data.ensure_demo(str(root))
    assert built == [str(root)] and not (root / "stale.json").exists()
    demo_data.ensure_demo(str(root))  # current: nothing to do
    assert len(built) == 1 and sorted(os.listdir(tmp_path)) == ["demo"]
