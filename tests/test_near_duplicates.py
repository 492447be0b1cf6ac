"""Near-duplicates (rtl_core.data.near_duplicates): a re-encoded copy is found and a different image is not, no
near-duplicate pair crosses a split of any task, an official split keeps its assignment (losing the held-out
member of a pair), and no pool holds a near-duplicate of a downstream val/test image. All on the real pack."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rtl_core.data import near_duplicates as nd
from rtl_core.data.demo_pools import _pool_candidates, held_out_fingerprints
from rtl_core.data.pack import read_folder
from rtl_core.data.registry import TASKS, load_task
from rtl_core.paths import data_root


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert(Image.fromarray(image).mode))


def test_a_reencoded_copy_is_a_near_duplicate_and_other_images_are_not():
    data = load_task("mri_cls")
    originals = data.images[:40]
    copies = np.stack([_jpeg(img, 90) for img in originals])  # a re-save; at 64 px quality 70 drops below r = 0.99
    assert not np.array_equal(copies, originals)  # not an exact duplicate: the content hash would miss it
    pairs = nd.near_duplicate_pairs(nd.Fingerprints(originals), nd.Fingerprints(copies))
    assert sorted(map(tuple, pairs.tolist())) == [(i, i) for i in range(40)]  # each copy matches its original only


@pytest.mark.parametrize(
    "name", ["ct_cls", "ct_liver_seg", "xray_cls", "mri_cls", "natural_cls", "imagenette_cls", "derm_cls"]
)
def test_no_near_duplicate_pair_crosses_a_split(name):
    """The check that failed on the mri_cls split before near-duplicates were grouped: 18 of its val/test images had a
    re-encoded copy in train."""
    data = load_task(name)
    train, held = data.splits == "train", data.splits != "train"
    pairs = nd.near_duplicate_pairs(nd.Fingerprints(data.images[held]), nd.Fingerprints(data.images[train]))
    assert len(pairs) == 0, f"{name}: {len(pairs)} val/test images have a near-duplicate in train"
    report = data.meta["near_duplicates"]
    assert report["max_bits"] == nd.MAX_BITS and report["pairs"] >= 0


def test_near_duplicates_are_reported_and_an_official_split_keeps_its_assignment():
    mri = load_task("mri_cls").meta["near_duplicates"]
    assert mri["pairs"] >= 18 and mri["groups_merged"] >= 18 and mri["held_out_dropped"] == 0  # re-split: grouped
    cub = load_task("natural_cls")
    assert cub.meta["near_duplicates"]["held_out_dropped"] >= 1  # the official split loses the held-out copy
    official = read_folder(data_root(), "natural/cub200_first50_birds_64").splits[cub.extras["source_index"]]
    assert ((official == "test") == (cub.splits == "test")).all()  # every kept image keeps its official side
    assert len(cub.images) < len(read_folder(data_root(), "natural/cub200_first50_birds_64").images)


@pytest.mark.parametrize("kind", ["ct", "natural"])
def test_no_pool_image_is_a_near_duplicate_of_a_downstream_val_or_test_image(kind):
    root = str(data_root())
    pool = _pool_candidates(kind, root, 0, 64, None)
    pairs = nd.near_duplicate_pairs(nd.Fingerprints(pool.images), held_out_fingerprints(root, 0))
    assert len(pairs) == 0, f"the {kind} pool holds {len(np.unique(pairs[:, 0]))} near-duplicates of val/test images"
    assert "imagenette_cls" in TASKS  # its val/test images are held out of the natural pool like every task's


def test_scan_runs_start_a_new_scan_at_a_gap_or_a_jump_in_size():
    from rtl_core.data.splits import scan_runs

    order = np.array([5, 1, 2, 3, 4, 7, 8])  # file numbers, shuffled; 6 is missing
    sizes = np.array([[300, 400], [200, 250], [210, 260], [220, 270], [150, 250], [305, 400], [300, 395]])
    runs = scan_runs(order, sizes)
    # 1-2-3 grow smoothly; 4 shrinks by 32 % (a new scan); 5 jumps back up by 100 %; the gap at 6 starts another
    assert len(set(runs[[1, 2, 3]])) == 1 and len(set(runs)) == 4
    assert runs[4] not in (runs[1], runs[0]) and runs[5] == runs[6] != runs[0]
    with pytest.raises(Exception, match="positive"):
        scan_runs(order, np.zeros((7, 2)))


def test_ct_cls_test_slices_are_not_same_scan_neighbours_of_training_slices():
    """The 48-bit near-duplicate cut alone ran through scans: 47 % of ct_cls test slices had a training slice 49-60
    bits away (same-scan neighbours; other sources sit at a median of 82). Grouped by scan runs it is ~20 %."""
    import json

    from rtl_core.data.registry import _crop_resize
    from rtl_core.data.splits import hamming_matrix, perceptual_hashes

    data = load_task("ct_cls")
    meta = json.loads((data_root() / "ct/covid_ct_cvt/meta.json").read_text())
    boxes = [meta["per_slice"][i].get("content_box_tlhw") for i in data.extras["source_index"]]
    bits = perceptual_hashes(np.stack([_crop_resize(img, box) for img, box in zip(data.images, boxes)]), 16)
    test, train = bits[data.splits == "test"], bits[data.splits == "train"]
    nearest = hamming_matrix(np.concatenate([test, train]))[: len(test), len(test) :].min(axis=1)
    band = float(np.mean((nearest > 48) & (nearest <= 60)))
    assert band < 0.3, f"{band:.0%} of ct_cls test slices have a training slice 49-60 pHash bits away"
    assert data.meta["scan_runs"] >= 100  # ~160 scans, not a handful of giant groups
