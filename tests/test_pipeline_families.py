"""The family registry across families: detection from model_index.json, the one-line error for a
diffusers pipeline no adapter wraps, and the shipped real-weight recipes of the flow DiT families."""
import pytest

from diffalign.config import load_config
from diffalign.pipelines import detect_family, families
from diffalign.train import get_trainer_class
from diffalign.train_command import recipe_path, trainer_name


@pytest.mark.parametrize("cls,family", [("FluxPipeline", "flux"), ("WanPipeline", "wan"), ("QwenImagePipeline", "qwenimage"),
                                        ("Flux2KleinPipeline", "flux2"), ("ZImagePipeline", "zimage"),
                                        ("HunyuanVideo15Pipeline", "hunyuanvideo15"), ("LTX2Pipeline", "ltx2"),
                                        ("StableDiffusion3Pipeline", "sd3")])
def test_family_detected_from_model_index(tmp_path, cls, family):
    (tmp_path / "model_index.json").write_text('{"_class_name": "%s"}' % cls)
    assert detect_family(str(tmp_path)) == family
    assert family in families()


def test_a_diffusers_family_without_an_adapter_is_named_in_one_line(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "Flux2Pipeline"}')  # FLUX.2 [dev]: no adapter yet
    with pytest.raises(ValueError) as err:
        detect_family(str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "'Flux2Pipeline'" in message and "flux" in message and "wan" in message


@pytest.mark.parametrize("name,family", [("flux1dev_flow_grpo_pickscore", "flux"), ("wan21_1_3b_flow_grpo", "wan"),
                                         ("flux1dev_dpo_pickapic", "flux"), ("qwenimage_dpo_pickapic", "qwenimage"),
                                         ("flux2klein4b_dpo_pickapic", "flux2"), ("ltx2_dense_dpo", "ltx2")])
def test_flow_dit_recipes_parse(name, family):
    path = recipe_path(name)
    cfg = load_config(get_trainer_class(trainer_name(path)).config_class, path)
    assert cfg.model.family == family and cfg.max_steps > 0
    text = open(path).read()
    assert "Memory" in text and "Targets" in text  # memory needs and the published result it aims at
