"""Precision chosen by MIXED_PRECISION="auto", and the bfloat16 inference path."""
import numpy as np
import pytest

from mrcnn.training.precision import choose_precision, describe_precision, resolve_precision

NO_BF16 = {"fpu", "sse2", "avx2", "avx512f", "avx512bw"}


def test_auto_picks_float32_on_a_cpu_without_bf16():
    assert resolve_precision("auto", cpu_flags=NO_BF16, gpus=[]) == "float32"


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16", "amx_tile"])
def test_auto_picks_bfloat16_on_a_cpu_with_bf16_units(flag):
    assert resolve_precision("auto", cpu_flags=NO_BF16 | {flag}, gpus=[]) == "mixed_bfloat16"


def test_auto_on_gpus_follows_compute_capability():
    assert resolve_precision("auto", cpu_flags=NO_BF16, gpus=[(7, 0)]) == "mixed_float16"
    assert resolve_precision("auto", cpu_flags=NO_BF16, gpus=[(8, 0)]) == "mixed_bfloat16"
    assert resolve_precision("auto", gpus=[{"compute_capability": (9, 0)}]) == "mixed_bfloat16"
    assert resolve_precision("auto", gpus=["7.5"]) == "mixed_float16"
    assert resolve_precision("auto", gpus=[(6, 0)]) == "float32"
    # a mixed box takes what its slowest GPU runs; the GPU decides, not the host CPU
    assert resolve_precision("auto", cpu_flags={"amx_bf16"}, gpus=[(8, 0), (7, 0)]) \
        == "mixed_float16"


def test_explicit_value_wins():
    bf16_cpu = {"avx512_bf16"}
    assert resolve_precision(None, cpu_flags=bf16_cpu, gpus=[]) == "float32"
    assert resolve_precision("float32", cpu_flags=bf16_cpu, gpus=[(8, 0)]) == "float32"
    assert resolve_precision("mixed_float16", cpu_flags=bf16_cpu, gpus=[]) == "mixed_float16"
    assert resolve_precision("mixed_bfloat16", cpu_flags=NO_BF16, gpus=[]) == "mixed_bfloat16"
    with pytest.raises(ValueError, match="MIXED_PRECISION"):
        resolve_precision("bf16")
    assert "avx512_bf16" in describe_precision("auto", cpu_flags=bf16_cpu, gpus=[])
    assert choose_precision(NO_BF16, [])[0] == "float32"


def test_config_defaults_to_auto():
    """(An unknown value is one of test_utils_config's impossible values.)"""
    from mrcnn.config import Config
    assert Config.MIXED_PRECISION == "auto"


def test_float16_training_uses_loss_scaling_only_when_resolved_to_float16(tiny_config):
    import keras
    from mrcnn.training import make_optimizer

    class F16(type(tiny_config)):
        MIXED_PRECISION = "mixed_float16"
    opt = make_optimizer(F16(), 0.01)
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)

    class BF16(type(tiny_config)):
        MIXED_PRECISION = "mixed_bfloat16"
    assert not isinstance(make_optimizer(BF16(), 0.01), keras.optimizers.LossScaleOptimizer)


def test_bfloat16_inference_returns_float32_outputs_of_the_same_shapes(tiny_config, tmp_path):
    import keras
    from mrcnn.model import MaskRCNN

    class F32(type(tiny_config)):
        MIXED_PRECISION = "float32"
        IMAGES_PER_GPU = 1

    class BF16(F32):
        MIXED_PRECISION = "mixed_bfloat16"
    keras.utils.set_random_seed(3)
    fp32 = MaskRCNN("inference", F32(), str(tmp_path))
    bf16 = MaskRCNN("inference", BF16(), str(tmp_path))
    assert bf16.precision == "mixed_bfloat16" and fp32.precision == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert bf16.keras_model.get_layer("fpn_p2").compute_dtype == "bfloat16"
    bf16.keras_model.set_weights(fp32.keras_model.get_weights())
    image = np.random.RandomState(0).randint(0, 255, (128, 128, 3)).astype(np.uint8)
    molded, metas, _ = bf16.mold_inputs([image])
    anchors = bf16._batch_anchors(molded)
    out32 = fp32._predict(molded, metas, anchors)
    out16 = bf16._predict(molded, metas, anchors)
    assert out32.keys() == out16.keys()
    for name, value in out16.items():
        assert value.shape == out32[name].shape, name
        if np.issubdtype(value.dtype, np.floating):
            assert value.dtype == np.float32, name
    r = bf16.detect([image])[0]
    assert r["masks"].shape[:2] == image.shape[:2] and r["rois"].dtype.kind in "if"


def test_auto_inference_keeps_float32_so_foreign_weights_give_their_answers():
    """An inference model built with "auto" computes in float32 on any machine: weights
    from matterport or a float32 run then detect exactly as they do in float32."""
    bf16_cpu = {"avx512_bf16"}
    assert resolve_precision("auto", cpu_flags=bf16_cpu, gpus=[],
                             mode="inference") == "float32"
    assert resolve_precision("mixed_bfloat16", mode="inference") == "mixed_bfloat16"
    assert "float32" in describe_precision("auto", cpu_flags=bf16_cpu, gpus=[],
                                           mode="inference")


def _half_precision_run(tmp_path):
    """A run directory whose run file says it was trained in mixed bfloat16, with a
    checkpoint that holds no head sizes (an empty HDF5 file: nothing to rebuild from)."""
    import h5py

    from fashion.config import make_config
    from fashion.run import write_run_file
    config = make_config(128, 4, 0, "resnet18", pretrained=False,
                         MIXED_PRECISION="mixed_bfloat16")
    write_run_file(str(tmp_path), config, {"class_names": ["BG", "a", "b", "c"],
                                           "attribute_index_to_id": []})
    ckpt = tmp_path / "mask_rcnn_fashion_0001.h5"
    h5py.File(ckpt, "w").close()
    return str(ckpt)


def test_a_run_trained_in_half_precision_infers_in_float32_unless_asked(tmp_path):
    """One run, one answer: inference is float32 on every machine whatever the run was
    trained in; --precision bf16|fp16 asks for half precision and --set still wins."""
    from fashion.errors import CLIError
    from fashion.run import Run
    ckpt = _half_precision_run(tmp_path)
    assert Run(ckpt).config().MIXED_PRECISION == "float32"
    assert Run(ckpt, precision="bf16").config().MIXED_PRECISION == "mixed_bfloat16"
    assert Run(ckpt, precision="fp16").config().MIXED_PRECISION == "mixed_float16"
    sets = ['MIXED_PRECISION="mixed_bfloat16"']
    assert Run(ckpt, sets=sets).config().MIXED_PRECISION == "mixed_bfloat16"
    assert "float32" in Run(ckpt).describe()
    with pytest.raises(CLIError, match="--precision"):
        Run(ckpt, precision="half")


def test_a_run_is_opened_once_from_the_flags(tmp_path):
    """Run.from_args reads the model flags; a command's own values sit under --set."""
    import argparse

    from fashion.run import Run
    ckpt = _half_precision_run(tmp_path)
    args = argparse.Namespace(weights=ckpt, logs=str(tmp_path), set=["DETECTION_MAX_INSTANCES=7"],
                              min_confidence=0.3, image_size=256, precision="float32")
    run = Run.from_args(args)
    assert run.class_names == ["BG", "a", "b", "c"] and run.checkpoint == ckpt
    config = run.config(DETECTION_MAX_INSTANCES=50, DETECTION_NMS_THRESHOLD=0.4)
    assert config.DETECTION_MAX_INSTANCES == 7          # --set wins over the command
    assert config.DETECTION_NMS_THRESHOLD == 0.4
    assert config.DETECTION_MIN_CONFIDENCE == 0.3 and config.IMAGE_MAX_DIM == 256
    assert vars(args)["set"] == ["DETECTION_MAX_INSTANCES=7"]   # the namespace untouched