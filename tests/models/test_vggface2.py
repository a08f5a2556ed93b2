"""VGGFace2 ResNet-50: architecture, preprocessing, and loading synthetic files in the published formats.

The real weight files are not available, so the tests write files the way their publishers did:
a Python 2 pickle of numpy arrays (cydonia999 ``.pkl``, opcodes emitted by hand), Python 3
pickles (protocols 2 and 4), and ``torch.save`` of a fresh ``OrderedDict`` in MatConvNet DAG
names (Albanie ``.pth``, legacy and zip containers). Most models use a small classifier
(``NC`` classes) to keep the files and forwards small; the backbone is always full size.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import shlex
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from interp.data.images import default_face_image_path, face_transform, load_image
from interp.models.vggface2 import (
    VGGFACE2_MEAN_BGR,
    CaffePreprocess,
    FaceResNet50,
    VGGFace2ResNet50,
)
from interp.models.vggface2_weights import (
    UnsafePickleError,
    WeightsError,
    load_into,
    load_vggface2_weights,
    save_weights,
)

NC = 16  # classifier size of the synthetic files (the published one is 8631)
NUM_PUBLISHED_TENSORS = 267  # 53 conv weights + 53 BN x 4 + fc weight and bias


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Full-size ResNet-50 forwards on shared CPUs: one intra-op thread avoids oversubscription
    (two threads were 10-25x slower with other processes running); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- synthetic weights and files -------------------------------------------------------------


def _published_arrays(num_classes: int = NC, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights as the cydonia999 pickle holds them: float32 numpy arrays, torchvision names, BGR.

    He-initialized convs, BN affine parameters around (1, 0), running statistics measured on
    random images (as training would leave them), so activations and logits have sensible
    magnitudes and the comparisons below are meaningful.
    """
    torch.manual_seed(seed)
    model = VGGFace2ResNet50(num_classes=num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.momentum = 1.0  # running stats := the statistics of the calibration batch
        model.fc.weight.normal_(0.0, 0.05)
        model.fc.bias.normal_(0.0, 0.1)
        model.train()(torch.rand(4, 3, 128, 128))
    return {
        key: np.ascontiguousarray(value.numpy().astype(np.float32))
        for key, value in model.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return _published_arrays()


def _py2_str(data: bytes) -> bytes:
    """A Python 2 ``str`` as cPickle writes it: SHORT_BINSTRING (U) or BINSTRING (T)."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<I", len(data)) + data


def write_py2_pickle(path, arrays: dict[str, np.ndarray]) -> None:
    """A dict of float32 arrays pickled as Python 2 + numpy 1 did (protocol 2, py2 ``str``)."""
    f4 = (
        b"cnumpy\ndtype\n" + _py2_str(b"f4") + b"K\x00K\x01\x87R"  # dtype('f4', 0, 1)
        b"(K\x03" + _py2_str(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # its state
    )
    out = [b"\x80\x02}("]  # PROTO 2, EMPTY_DICT, MARK
    for key, array in arrays.items():
        assert array.dtype == np.float32 and array.flags.c_contiguous
        out.append(_py2_str(key.encode("ascii")))
        # numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b')
        reconstruct = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        out.append(reconstruct + _py2_str(b"b") + b"\x87R")
        shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in array.shape) + b"t"
        out.append(b"(K\x01" + shape + f4 + b"\x89" + _py2_str(array.tobytes()) + b"tb")  # BUILD state
    out.append(b"u.")  # SETITEMS, STOP
    path.write_bytes(b"".join(out))


_DAG_PARTS = {"conv1": "1x1_reduce", "conv2": "3x3", "conv3": "1x1_increase"}


def dag_name(key: str) -> str:
    """torchvision-style key -> the Albanie DAG key (written from the formats table, not the loader)."""
    module, param = key.rsplit(".", 1)
    if module == "conv1":
        return f"conv1_7x7_s2.{param}"
    if module == "bn1":
        return f"conv1_7x7_s2_bn.{param}"
    if module == "fc":
        return f"classifier.{param}"
    m = re.fullmatch(r"layer(\d)\.(\d)\.(conv\d|bn\d|downsample\.0|downsample\.1)", module)
    assert m, key
    prefix = f"conv{int(m.group(1)) + 1}_{int(m.group(2)) + 1}"
    part = m.group(3)
    if part.startswith("downsample"):
        return f"{prefix}_1x1_proj{'_bn' if part.endswith('1') else ''}.{param}"
    if part.startswith("bn"):
        return f"{prefix}_{_DAG_PARTS['conv' + part[-1]]}_bn.{param}"
    return f"{prefix}_{_DAG_PARTS[part]}.{param}"


def dag_state_dict(arrays: dict[str, np.ndarray]) -> collections.OrderedDict:
    """The same weights as Albanie's DAG file holds them: RGB conv1, 1x1-conv classifier, tensors."""
    od = collections.OrderedDict()  # a fresh dict: no _metadata, no num_batches_tracked
    for key, array in arrays.items():
        value = torch.from_numpy(array.copy())
        if key == "conv1.weight":
            value = value.flip(1).contiguous()  # BGR -> RGB filters, as MatConvNet's import did
        if key == "fc.weight":
            value = value[:, :, None, None].contiguous()
        od[dag_name(key)] = value
    return od


@pytest.fixture
def big_tmp(tmp_path):
    """tmp_path whose large files are removed after the test (each file is about 95 MB)."""
    yield tmp_path
    for path in tmp_path.iterdir():
        if path.is_file() and path.stat().st_size > 1_000_000:
            path.unlink()


@pytest.fixture(scope="module")
def face() -> torch.Tensor:
    image = load_image(default_face_image_path())
    return face_transform()(image).unsqueeze(0)


def _model(num_classes: int = NC) -> VGGFace2ResNet50:
    return VGGFace2ResNet50(num_classes=num_classes).eval()


def _assert_state_equals(model: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    state = model.state_dict()
    for key, array in arrays.items():
        assert torch.equal(state[key], torch.from_numpy(array)), key


# --- architecture ----------------------------------------------------------------------------


def _torchvision_caffe_variant(num_classes: int, caffe: bool) -> torch.nn.Module:
    """torchvision's ResNet-50, optionally patched into the Caffe variant (stride on 1x1, ceil pool)."""
    net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    if caffe:
        net.maxpool = torch.nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        for layer in (net.layer2, net.layer3, net.layer4):
            layer[0].conv1.stride = (2, 2)
            layer[0].conv2.stride = (1, 1)
    return net.eval()


def test_architecture_is_torchvision_resnet50_with_the_caffe_changes(arrays):
    model = _model()
    load_arrays = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model.load_state_dict(load_arrays)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ours = model(x)
        caffe_input = model.preprocess(x)
        reference = _torchvision_caffe_variant(NC, caffe=True)
        reference.load_state_dict(load_arrays)
        expected = reference(caffe_input)
        plain = _torchvision_caffe_variant(NC, caffe=False)
        plain.load_state_dict(load_arrays)  # the same names and shapes load strictly ...
        unpatched = plain(caffe_input)
    torch.testing.assert_close(ours, expected, rtol=1e-3, atol=1e-3)
    assert (ours - unpatched).abs().max() > 1e-2  # ... but compute a different function


def test_downsampling_stride_sits_on_the_first_1x1_conv():
    model = _model()
    for name in ("layer2", "layer3", "layer4"):
        block = getattr(model, name)[0]
        assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
        assert block.downsample[0].stride == (2, 2)
    assert model.layer1[0].conv1.stride == (1, 1) and model.layer1[0].downsample is not None
    assert model.maxpool.ceil_mode and model.maxpool.padding == 0
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_full_size_model_counts_and_logits_shape():
    model = VGGFace2ResNet50().eval()
    state = model.state_dict()
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == NUM_PUBLISHED_TENSORS
    assert sum(p.numel() for p in model.parameters()) == 41_192_951
    assert not any(k.startswith("preprocess") for k in state)  # the state dict is just the weights
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 224, 224))
    assert logits.shape == (2, 8631)
    assert torch.isfinite(logits).all()


def test_feature_sizes_at_224_and_other_input_sizes():
    model = _model()
    modules = dict(model.named_modules())
    shapes = {}

    def record(name):
        return lambda module, inputs, output: shapes.__setitem__(name, tuple(output.shape))

    layers = ("maxpool", "layer1", "layer2", "layer3", "layer4")
    hooks = [modules[name].register_forward_hook(record(name)) for name in layers]
    try:
        with torch.no_grad():
            model(torch.rand(1, 3, 224, 224))
    finally:
        for hook in hooks:
            hook.remove()
    assert shapes == {
        "maxpool": (1, 64, 56, 56),
        "layer1": (1, 256, 56, 56),
        "layer2": (1, 512, 28, 28),
        "layer3": (1, 1024, 14, 14),
        "layer4": (1, 2048, 7, 7),
    }
    with torch.no_grad():
        x = torch.rand(1, 3, 160, 256)  # non-square, not 224: the adaptive head still works
        assert model.forward_features(x).shape == (1, 2048, 5, 8)
        assert model(x).shape == (1, NC)
        assert model.embed(x).shape == (1, 2048)


def test_adaptive_head_equals_caffe_avgpool_at_224():
    model = _model()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        features = model.forward_features(x)
        caffe = F.avg_pool2d(features, kernel_size=7, stride=1).flatten(1)
        torch.testing.assert_close(model.embed(x), caffe)
        headless = VGGFace2ResNet50(num_classes=NC, include_top=False).eval()
        headless.load_state_dict(model.state_dict())
        torch.testing.assert_close(headless(x), model.embed(x))
        torch.testing.assert_close(model.fc(model.embed(x)), model(x))


# --- preprocessing ---------------------------------------------------------------------------


def test_caffe_preprocess_scales_reorders_and_subtracts_the_mean():
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0] = 1.0  # R
    x[:, 1] = 0.5  # G
    b, g, r = VGGFACE2_MEAN_BGR
    bgr = CaffePreprocess("BGR")(x)
    torch.testing.assert_close(bgr[0, :, 0, 0], torch.tensor([0.0 - b, 127.5 - g, 255.0 - r]))
    rgb = CaffePreprocess("RGB")(x)
    torch.testing.assert_close(rgb[0, :, 0, 0], torch.tensor([255.0 - r, 127.5 - g, 0.0 - b]))
    for order in ("BGR", "RGB"):
        pre = CaffePreprocess(order)
        torch.testing.assert_close(pre.inverse(pre(x)), x)
        assert not list(pre.parameters()) and not pre.state_dict()
    pre = CaffePreprocess("BGR")
    pre.set_channel_order("rgb")
    torch.testing.assert_close(pre(x), rgb)
    with pytest.raises(ValueError, match="channel_order"):
        CaffePreprocess("GBR")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        pre(torch.zeros(1, 1, 4, 4))


def test_caffe_preprocess_follows_the_model_dtype():
    pre = CaffePreprocess().to(torch.float64)
    assert pre(torch.rand(1, 3, 2, 2, dtype=torch.float64)).dtype == torch.float64


# --- the LightningModule ---------------------------------------------------------------------


def test_face_resnet50_exposes_layers_by_simple_names():
    model = FaceResNet50(weights="random", num_classes=NC)
    names = dict(model.named_modules())
    expected = ("preprocess", "conv1", "layer3", "layer4.2", "layer3.5.relu3", "layer4.0.downsample.0", "fc")
    for name in expected:
        assert name in names, name
    assert not any(n.startswith("net.") for n in names)
    assert model.random_weights and model.weights_info is None
    assert isinstance(model, VGGFace2ResNet50)
    assert not model.training
    with torch.no_grad():
        out = model.predict_step((torch.rand(2, 3, 224, 224), torch.tensor([0, 1])), 0)
    assert out["logits"].shape == (2, NC) and out["embedding"].shape == (2, 2048)
    torch.testing.assert_close(out["embedding"].norm(dim=1), torch.ones(2))


def test_face_resnet50_without_weights_says_which_files_work():
    with pytest.raises(WeightsError) as info:
        FaceResNet50()
    message = str(info.value)
    for name in ("resnet50_ft_weight.pkl", "resnet50_scratch_weight.pkl", "resnet50_ft_dag.pth", "cydonia"):
        assert name in message
    assert isinstance(info.value, ValueError)


# --- cydonia999 .pkl -------------------------------------------------------------------------


def test_python2_pickle_needs_latin1_and_loads(big_tmp, arrays):
    path = big_tmp / "resnet50_ft_weight.pkl"
    write_py2_pickle(path, arrays)
    with open(path, "rb") as f, pytest.raises(UnicodeDecodeError):
        pickle.load(f)  # what a plain Python 3 pickle.load does with the published file
    state, order, fmt = load_vggface2_weights(path)
    assert (order, fmt) == ("BGR", "pickle:torchvision")
    assert len(state) == NUM_PUBLISHED_TENSORS
    assert list(state) == list(arrays)
    for key, array in arrays.items():
        assert state[key].dtype == torch.float32
        assert torch.equal(state[key], torch.from_numpy(array)), key
    model = _model()
    info = load_into(model, path)
    assert info.fmt == "pickle:torchvision" and info.num_tensors == NUM_PUBLISHED_TENSORS
    _assert_state_equals(model, arrays)
    assert model.channel_order == "BGR"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_load(big_tmp, arrays, protocol):
    path = big_tmp / f"weights_p{protocol}.pkl"
    with open(path, "wb") as f:
        pickle.dump(dict(arrays), f, protocol=protocol)
    model = _model()
    info = load_into(model, path)
    assert info.fmt == "pickle:torchvision" and info.file_channel_order == "BGR"
    _assert_state_equals(model, arrays)


def test_keys_are_normalized(tmp_path):
    raw = collections.OrderedDict()
    raw[b"module.conv1.weight"] = np.ones((2, 3), np.float32)
    raw["module.bn1.num_batches_tracked"] = np.array(5)
    raw["module.bn1.running_var"] = np.ones(2, np.float64)
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(raw, protocol=2))
    state, _, _ = load_vggface2_weights(path)
    assert list(state) == ["conv1.weight", "bn1.running_var"]
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_malicious_pickles_are_refused_before_running(tmp_path):
    marker = tmp_path / "pwned"
    command = f"touch {shlex.quote(str(marker))}"

    class Payload:
        def __reduce__(self):
            return (os.system, (command,))

    # Protocol 0, as Python 2 wrote dicts: {'conv1.weight': os.system(command)}.
    protocol0 = f"(dp0\nS'conv1.weight'\np1\ncos\nsystem\np2\n(S'{command}'\np3\ntp4\nRp5\ns.".encode()
    # The test's own check that the payloads work: an ordinary unpickler runs them.
    control = tmp_path / "control"
    pickle.loads(f"cos\nsystem\n(S'touch {control}'\ntR.".encode())
    assert control.exists()

    files = {
        "protocol0.pkl": protocol0,
        "in_a_dict.pkl": pickle.dumps({"conv1.weight": np.ones(3, np.float32), "x": Payload()}, 2),
        "protocol4.pkl": pickle.dumps({"fc.bias": Payload()}, protocol=4),
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(UnsafePickleError, match="system"):
            load_vggface2_weights(path)
    for legacy in (True, False):
        path = tmp_path / f"evil_{legacy}.pth"
        torch.save({"conv1.weight": Payload()}, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(UnsafePickleError, match="weights_only"):
            load_vggface2_weights(path)
    bare = tmp_path / "bare.pkl"  # a stream that cannot be a dict of weights is not even unpickled
    bare.write_bytes(f"cos\nsystem\n(S'{command}'\ntR.".encode())
    with pytest.raises(WeightsError, match="not a weight file"):
        load_vggface2_weights(bare)
    assert not marker.exists()
    assert issubclass(UnsafePickleError, WeightsError)


# --- Albanie DAG .pth ------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_dag_pth_loads_strictly(big_tmp, arrays, legacy):
    path = big_tmp / "resnet50_ft_dag.pth"
    od = dag_state_dict(arrays)
    assert len(od) == NUM_PUBLISHED_TENSORS and od["classifier.weight"].shape == (NC, 2048, 1, 1)
    torch.save(od, path, _use_new_zipfile_serialization=not legacy)
    assert path.read_bytes()[:4] != b"PK\x03\x04" if legacy else path.read_bytes()[:4] == b"PK\x03\x04"
    state, order, fmt = load_vggface2_weights(path)
    assert order == "RGB"
    assert fmt == ("torch-legacy:dag" if legacy else "torch-zip:dag")
    assert set(state) == set(arrays) and len(state) == NUM_PUBLISHED_TENSORS
    assert state["fc.weight"].shape == (NC, 2048)
    torch.testing.assert_close(state["conv1.weight"], torch.from_numpy(arrays["conv1.weight"]).flip(1))
    model = _model()
    load_into(model, path)
    # The model keeps its BGR convention: conv1 is flipped back, everything else is as in the file.
    _assert_state_equals(model, arrays)


def test_dag_and_pkl_files_give_the_same_logits_on_a_photo(big_tmp, arrays, face):
    pkl, dag = big_tmp / "resnet50_ft_weight.pkl", big_tmp / "resnet50_ft_dag.pth"
    write_py2_pickle(pkl, arrays)
    torch.save(dag_state_dict(arrays), dag, _use_new_zipfile_serialization=False)
    from_pkl, from_dag = _model(), _model()
    load_into(from_pkl, pkl)
    load_into(from_dag, dag)
    with torch.no_grad():
        logits_pkl, logits_dag = from_pkl(face), from_dag(face)
        # The same DAG weights fed RGB explicitly (the Albanie recipe: x*255 - RGB mean).
        rgb = _model()
        rgb.preprocess.set_channel_order("RGB")
        state, _, _ = load_vggface2_weights(dag)
        rgb.load_state_dict(state)
        logits_rgb = rgb(face)
        # The pitfall: BGR weights fed RGB (channel order ignored) give other logits.
        wrong = _model()
        wrong.load_state_dict(from_pkl.state_dict())
        wrong.preprocess.set_channel_order("RGB")
        logits_wrong = wrong(face)
    torch.testing.assert_close(logits_dag, logits_pkl, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(logits_rgb, logits_pkl, rtol=1e-3, atol=1e-3)
    assert (logits_wrong - logits_pkl).abs().max() > 1.0


def test_mmdnn_names_are_mapped(tmp_path, arrays):
    od = collections.OrderedDict()
    for key, value in dag_state_dict(arrays).items():
        if key.startswith("classifier."):  # MMdnn: a Linear named classifier_1
            key, value = key.replace("classifier.", "classifier_1."), value.reshape(value.shape[0], -1)
        od[key] = value
    state, order, fmt = load_vggface2_weights(_save(tmp_path / "mmdnn.pth", od))
    assert fmt == "torch-zip:mmdnn" and order == "BGR"
    assert set(state) == set(arrays) and state["fc.weight"].shape == (NC, 2048)
    (tmp_path / "mmdnn.pth").unlink()


def _save(path, obj):
    torch.save(obj, path)
    return path


# --- this model's own files ------------------------------------------------------------------


def test_saved_state_dicts_round_trip(big_tmp, arrays, face):
    dag = big_tmp / "dag.pth"
    torch.save(dag_state_dict(arrays), dag)
    model = _model()
    load_into(model, dag)
    with torch.no_grad():
        expected = model(face)
    # A plain torch.save(model.state_dict()): it has _metadata and num_batches_tracked.
    plain = _save(big_tmp / "plain.pth", model.state_dict())
    again = _model()
    assert load_into(again, plain).fmt == "torch-zip:torchvision"
    # save_weights keeps the channel order, also for a model that declares RGB.
    rgb = _model()
    rgb.preprocess.set_channel_order("RGB")
    load_into(rgb, dag)
    save_weights(rgb, big_tmp / "ours.pth")
    state, order, fmt = load_vggface2_weights(big_tmp / "ours.pth")
    assert (order, fmt) == ("RGB", "torch-zip:interp")
    third = _model()
    load_into(third, big_tmp / "ours.pth")
    with torch.no_grad():
        torch.testing.assert_close(again(face), expected)
        torch.testing.assert_close(rgb(face), expected, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(third(face), expected, rtol=1e-3, atol=1e-3)


def test_face_resnet50_loads_a_weight_file(big_tmp, arrays, face):
    path = big_tmp / "resnet50_scratch_weight.pkl"
    write_py2_pickle(path, arrays)
    model = FaceResNet50(weights=path, num_classes=NC)
    assert not model.random_weights
    assert model.weights_info.fmt == "pickle:torchvision"
    _assert_state_equals(model, arrays)
    with torch.no_grad():
        out = model.predict_step(face, 0)
    torch.testing.assert_close(out["logits"], model(face))
    torch.testing.assert_close(out["embedding"], F.normalize(model.embed(face), dim=1))
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["vggface2_channel_order"] == "BGR"


# --- errors ----------------------------------------------------------------------------------


def test_missing_empty_text_and_keras_files_are_refused(tmp_path):
    missing = tmp_path / "resnet50_ft_weight.pkl"
    with pytest.raises(WeightsError, match="not found.*resnet50_ft_weight.pkl"):
        load_vggface2_weights(missing)
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty.pkl: the file is empty"):
        load_vggface2_weights(tmp_path / "empty.pkl")
    (tmp_path / "notes.txt").write_text("These are not weights.\n")
    with pytest.raises(WeightsError, match="notes.txt: not a weight file"):
        load_vggface2_weights(tmp_path / "notes.txt")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(WeightsError, match="weights.h5: Keras HDF5 files are not supported"):
        load_vggface2_weights(tmp_path / "weights.h5")
    with pytest.raises(WeightsError, match="is a directory"):
        load_vggface2_weights(tmp_path)
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(WeightsError, match="list.pkl: holds a list"):
        load_vggface2_weights(tmp_path / "list.pkl")


def test_truncated_files_are_refused(tmp_path):
    conv1 = np.random.default_rng(0).standard_normal((64, 3, 7, 7)).astype(np.float32)
    weights = {"conv1.weight": conv1}
    py2 = tmp_path / "full.pkl"
    write_py2_pickle(py2, weights)
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, tmp_path / "full_zip.pth")
    torch.save(
        {k: torch.from_numpy(v) for k, v in weights.items()},
        tmp_path / "full_legacy.pth",
        _use_new_zipfile_serialization=False,
    )
    for name in ("full.pkl", "full_zip.pth", "full_legacy.pth"):
        data = (tmp_path / name).read_bytes()
        assert load_vggface2_weights(tmp_path / name)[0].keys() == weights.keys()  # intact: loads
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(WeightsError, match=re.escape(str(cut))):
            load_vggface2_weights(cut)


def test_wrong_and_missing_keys_are_listed_in_one_error(big_tmp, arrays):
    od = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in arrays.items())
    del od["layer3.2.bn2.running_var"]
    od["layer3.2.bn2.running_variance"] = torch.ones(256)
    od["layer2.1.conv4.weight"] = torch.ones(32, 512, 1, 1)
    path = _save(big_tmp / "wrong_keys.pth", od)
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        load_into(model, path)
    message = str(info.value)
    assert "missing (1): layer3.2.bn2.running_var" in message
    assert "unexpected (2):" in message and "layer3.2.bn2.running_variance" in message
    assert "layer2.1.conv4.weight" in message and "SE-ResNet-50" in message
    assert str(path) in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded


def test_wrong_shapes_are_listed(big_tmp, arrays):
    path = big_tmp / "w.pkl"
    with open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=4)
    with pytest.raises(WeightsError) as info:
        load_into(_model(num_classes=NC + 1), path)
    message = str(info.value)
    assert f"fc.weight (file [{NC}, 2048], model [{NC + 1}, 2048])" in message
    assert f"fc.bias (file [{NC}], model [{NC + 1}])" in message
    assert "wrong shape (2)" in message and "num_classes" in message
    assert "missing" not in message and "unexpected" not in message


def test_an_image_passed_as_weights_is_refused():
    with pytest.raises(WeightsError, match="astronaut.png: not a weight file"):
        load_vggface2_weights(default_face_image_path())
