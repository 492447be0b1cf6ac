"""Config validation names the bad key; CT windows and channel handling behave as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtl_core.config import PROFILES, load_config
from rtl_core.data.intensity import WINDOWS, get_window, render, to_chw3, to_uint8
from rtl_core.data.pack import read_arrays
from rtl_core.errors import ConfigError, DataError


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_load(profile):
    config = load_config(profile)
    assert config.profile == profile and len(config.hash()) == 12


def test_paper_profile_has_the_papers_settings():
    paper = load_config("paper").pretrain
    assert (paper.backbone, paper.batch_size, paper.epochs, paper.temperature, paper.projection_dim) == (
        "resnet50",
        4096,
        100,
        0.5,
        256,
    )
    assert paper.optimizer == "lars" and paper.lr_scaling == "sqrt" and paper.gaussian_blur is False


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"pretrain\.epocs: unknown key"):
        load_config("default", overrides={"pretrain": {"epocs": 3}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"data\.image_size: Input should be a valid integer"):
        load_config("default", overrides={"data": {"image_size": "big"}})


def test_unknown_profile_task_pool_and_init():
    with pytest.raises(ConfigError, match="Unknown profile 'fast'"):
        load_config("fast")
    with pytest.raises(ConfigError, match="unknown task 'liver'"):
        load_config("default", overrides={"evaluate": {"tasks": ["liver"]}})
    with pytest.raises(ConfigError, match="unknown pool 'radnet'"):
        load_config("default", overrides={"pretrain": {"pools": ["radnet"]}})
    with pytest.raises(ConfigError, match="'imagenet' is not 'scratch'"):
        load_config("default", overrides={"evaluate": {"inits": ["imagenet"]}})


def test_config_file_overrides_profile_and_defines_user_data(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "profile: paper\n"
        "data:\n"
        "  pools:\n    my_ct: {format: dicom, path: /data/ct, window: abdomen}\n"
        "  tasks:\n    my_birds: {format: imagefolder, path: /data/birds, metrics: [accuracy]}\n"
        "pretrain:\n  pools: [my_ct, natural]\n"
        "evaluate:\n  tasks: [my_birds, ct_cls]\n"
    )
    config = load_config(path=path)
    assert config.profile == "paper" and config.pretrain.backbone == "resnet50"
    assert config.data.pools["my_ct"].format == "dicom" and config.evaluate.tasks == ["my_birds", "ct_cls"]
    path.write_text("data:\n  pools:\n    ct: {format: dicom, path: /x}\n")
    with pytest.raises(ConfigError, match="taken by the demo suite"):
        load_config(path=path)
    path.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path=path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(path=tmp_path / "missing.yaml")


def test_windows_map_hu_linearly_and_clip():
    abdomen = WINDOWS["abdomen"]  # level 40, width 400: -160 .. 240 HU
    hu = np.array([-1000, -160, 40, 240, 2000], dtype=np.int16)
    assert np.allclose(abdomen(hu.astype(np.float32)), [0, 0, 0.5, 1, 1])
    assert get_window((40, 400)) == abdomen
    with pytest.raises(ConfigError, match="Unknown CT window 'soft'"):
        get_window("soft")
    with pytest.raises(ConfigError, match="width must be positive"):
        get_window((0, 0))
    for name in ("lung", "abdomen", "brain", "full"):
        assert name in WINDOWS


def test_real_hu_volume_renders_and_8bit_passes_through(pack):
    hu = read_arrays(pack, "ct/ircadb_p17_liver")
    lung = to_uint8(hu.images, "hu", "lung")
    liver = to_uint8(hu.images, "hu", "liver")
    assert lung.dtype == np.uint8
    # In a liver window the liver is mid-grey; in a lung window it is bright soft tissue.
    assert 60 < np.median(liver[hu.masks > 0]) < 230
    assert np.median(lung[hu.masks > 0]) > np.median(lung[:, :4, :4])
    eight = read_arrays(pack, "ct/msd_liver_slices_sarah").images
    assert to_uint8(eight, "uint8", "lung") is eight
    with pytest.raises(ConfigError, match="need a CT window"):
        to_uint8(hu.images, "hu", None)
    with pytest.raises(DataError, match="must be uint8"):
        to_uint8(hu.images, "uint8", None)


def test_grey_to_three_channels_and_render_sizes(pack):
    grey = read_arrays(pack, "ct/chaos_ct_minitest_liver_sarah").images
    chw = to_chw3(grey)
    assert chw.shape == (20, 3, 128, 128) and torch.equal(chw[:, 0], chw[:, 2])
    out = render(read_arrays(pack, "ct/totalseg_examples", "ct3mm_").images, "hu", "abdomen", 48)
    assert out.shape == (112, 3, 48, 48) and out.dtype == torch.uint8


def test_unknown_ssl_methods_fail_at_config_load_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"'ssl:ct:nomethod' names SSL method 'nomethod'; known methods: \['simclr'"):
        load_config("smoke", overrides={"evaluate": {"inits": ["scratch", "ssl:ct:nomethod"]}})
    with pytest.raises(ConfigError, match=r"pretrain.methods: unknown SSL method 'simclr2'; known methods: \["):
        load_config("smoke", overrides={"pretrain": {"methods": ["simclr2"]}})


def test_missing_encoder_hint_is_a_command_that_selects_the_study(tmp_path):
    """A custom study's hint says --config <its file> (--profile <study> fails with "Unknown profile"); a stock
    profile's says --profile. The hint is parsed by rtl's own parser and loads the same study."""
    import argparse
    import re
    import shlex

    from rtl_core.errors import CheckpointError
    from rtl_core.models.inits import check_checkpoint
    from rtl_core.names import parse_init
    from rtl_core.pretrain.cli import add_pretrain_parser

    parser = argparse.ArgumentParser(prog="rtl")
    add_pretrain_parser(parser.add_subparsers(dest="command"))
    path = tmp_path / "my study.yaml"
    path.write_text("profile: smoke\nstudy: my_liver_study\nevaluate: {inits: [scratch, ssl:ct:byol]}\n")
    for config, option in (
        (load_config(path=path), f"--config '{path.resolve()}'"),
        (load_config("smoke"), "--profile smoke"),
    ):
        with pytest.raises(CheckpointError) as caught:
            check_checkpoint(parse_init("ssl:ct:byol"), config.study)
        commands = re.findall(r"`(rtl pretrain [^`]*)`", str(caught.value))
        assert len(commands) == 2, str(caught.value)
        for command in commands:
            args = parser.parse_args(shlex.split(command)[1:])
            again = load_config(args.profile, args.config)
            assert again.study == config.study and again.hash() == config.hash()
        assert commands == [f"rtl pretrain {option} --pool ct --method byol", f"rtl pretrain {option}"]
