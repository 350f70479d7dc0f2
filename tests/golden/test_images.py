"""Images in (golden.images): the reference preprocessing bit for bit, every 8-bit level kept,
and every kind of source, with the errors a user meets named by file."""
import numpy as np
import pytest
import torch
from PIL import Image

from golden.encoding import fold_input_normalization
from golden.export import load_model
from golden.fold import fold_model
from golden.images import IMAGENET_MEAN, IMAGENET_STD, ImageError, Preprocessing, open_images, torchvision
from golden.photos import write_photo_folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photo_folder(tmp_path_factory.mktemp("photos"), per_class=3, size=96)


def reference_pipeline(input_size: int):
    """The reference evaluation transform, written out independently of golden.images (timm / MAE
    build_transform: crop_pct 224/256 up to 224 pixels)."""
    T = torchvision().transforms
    size = int(input_size / (224 / 256))
    return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(input_size),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def test_preprocessing_equals_the_torchvision_reference_pipeline(photos):
    pre = Preprocessing.reference(64)
    assert pre.resize_size == 73 and pre.crop_pct == 224 / 256
    source = open_images(photos, pre)
    pixels, labels = source.load()
    assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == (6, 3, 64, 64)
    ours = source.normalized(pixels)
    reference = reference_pipeline(64)
    for i, path in enumerate(source.files):
        with Image.open(path) as img:
            want = reference(img.convert("RGB"))
        assert torch.equal(ours[i], want), path
    assert labels.tolist() == [0, 0, 0, 1, 1, 1] and source.classes == ["china", "flower"]


def test_every_8bit_level_of_every_channel_is_its_own_code(tmp_path):
    """256 levels per channel survive: the chip's code is the pixel, and the normalized float
    input maps back onto it exactly; the folded encoding conv sees the level itself."""
    pre = Preprocessing.reference(16)
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for c in range(3):
        img = np.zeros((1, 3, 16, 16), dtype=np.uint8)
        img[0, c] = levels
        np.save(tmp_path / f"levels{c}.npy", img)
        pixels, _ = open_images(tmp_path / f"levels{c}.npy", pre).load()
        codes = pixels[0, c].flatten().to(torch.int64)
        assert torch.equal(codes, torch.arange(256)) and len(set(codes.tolist())) == 256
        x = pre.normalize(pixels)[0, c].double().flatten()
        back = torch.round((x - pre.offset[c]) / pre.scale[c]).to(torch.int64)
        assert torch.equal(back, torch.arange(256)), f"channel {c}"
        # within half a level: rounding can never merge two levels
        assert float(((x - pre.offset[c]) / pre.scale[c] - torch.arange(256)).abs().max()) < 1e-3


def test_folded_normalization_equals_the_model_on_normalized_input_at_the_borders():
    """The encoding conv folded onto pixels (golden.encoding) computes the original conv on the
    normalized image, border positions included (zero padding of x, not of the pixels)."""
    model = load_model(None, model_name="metaspikeformer_tiny", random_init=4, in_channels=3, T=1)
    folded = fold_model(model)
    pre = Preprocessing.reference(32)
    on_pixels = fold_input_normalization(folded, pre.scale, pre.offset, height=32, width=32)
    step = on_pixels.step("downsample1_1.encode_conv")
    assert step.border is not None and float(step.border[:, 3:-3, 3:-3].abs().max()) == 0.0
    assert float(step.border[:, 0, 0].abs().max()) > 0.0            # the corner misses taps
    pixels = torch.randint(0, 256, (3, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    want = folded.trace(pre.normalize(pixels))["downsample1_1.encode_conv"]
    got = on_pixels.trace(pixels.float())["downsample1_1.encode_conv"]
    assert float((want - got).abs().max()) < 1e-5 * float(want.abs().max())
    # and without the border the corners would be wrong by far more than float rounding
    step.border = None
    off = on_pixels.trace(pixels.float())["downsample1_1.encode_conv"]
    assert float((want - off)[..., 0, 0].abs().max()) > 1e-2


def test_flat_folder_is_unlabelled_and_tensor_files_carry_labels(photos, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted(photos.rglob("*.jpg"))[:2]:
        (flat / p.name).write_bytes(p.read_bytes())
    source = open_images(flat, Preprocessing.reference(64))
    assert source.kind == "flat" and source.labels is None and len(source) == 2
    pixels = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    torch.save({"images": pixels, "labels": torch.arange(5)}, tmp_path / "t.pt")
    t = open_images(tmp_path / "t.pt", Preprocessing.reference(64))
    got, labels = t.load()
    assert torch.equal(got, pixels) and labels.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(t.select(2, 2).load()[0], pixels[2:4]) and t.select(2, 2).first == 2


def test_digits_source_is_the_split_at_pixel_levels():
    source = open_images("digits", Preprocessing.digits())
    pixels, labels = source.load()
    assert len(source) == 450 and int(pixels.max()) == 16 and pixels.dtype == torch.uint8
    assert torch.equal(source.normalized(pixels), pixels.float() / 16)


def _empty(d):
    return d


def _empty_class(d):
    (d / "a").mkdir()
    return d


def _corrupt_jpeg(d):
    (d / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return d


def _small(d):
    Image.new("RGB", (40, 30)).save(d / "small.png")
    return d


def _missing(d):
    return d / "missing"


@pytest.mark.parametrize("make, words", [
    (_empty, "holds no image files"),
    (_empty_class, "no image files in its 1 class folder"),
    (_corrupt_jpeg, "bad.jpg: cannot be read as an image"),
    (_small, "small.png: the image is 40x30, smaller than the 64x64 crop"),
    (_missing, "no such file or folder"),
])
def test_bad_sources_name_the_file(tmp_path, make, words):
    folder = tmp_path / "imgs"
    folder.mkdir()
    spec = make(folder)
    with pytest.raises(ImageError, match=words):
        source = open_images(spec, Preprocessing.reference(64))
        source.load()


def test_grayscale_photo_is_converted_and_said(tmp_path):
    Image.fromarray(np.full((80, 80), 128, dtype=np.uint8), mode="L").save(tmp_path / "gray.png")
    source = open_images(tmp_path, Preprocessing.reference(64))
    pixels, _ = source.load()
    assert pixels.shape == (1, 3, 64, 64) and int(pixels.min()) == int(pixels.max()) == 128
    assert any("gray.png: L image converted to RGB" in n for n in source.notes)


def test_selection_past_the_end_is_refused(photos):
    source = open_images(photos, Preprocessing.reference(64))
    with pytest.raises(ImageError, match=r"--start 6 is past the end: the source has 6 image\(s\)"):
        source.select(6, 1)
    with pytest.raises(ImageError, match="--count 3 from --start 4"):
        source.select(4, 3)
