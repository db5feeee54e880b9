"""RGB volumes as model inputs (real MRML, ``slicer-core``): converted to grey, and said so.

The reference for the conversion is Pillow's ``Image.convert("L")`` (ITU-R BT.601 luminance, rounded to 8 bits) and
MedXAILib's own reading of the same RGB image from a PNG file (``read_image``), so a radiograph gives the same input
from the command line and from a node in Slicer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import vtk
from vtk.util import numpy_support

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "MedXAI"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import slicer  # noqa: E402
from MedXAILogicLib import bridge, inputs, workflow  # noqa: E402

from MedXAILib.errors import InputError  # noqa: E402
from MedXAILib.io import read_image, read_volume  # noqa: E402


def rgb_node(scene, rgb: np.ndarray, name: str = "colour X-ray"):
    """A vtkMRMLVectorVolumeNode holding ``rgb`` (J, I, 3) as one slice, as Slicer loads a colour PNG."""
    j, i, c = rgb.shape
    image = vtk.vtkImageData()
    image.SetDimensions(i, j, 1)
    data = numpy_support.numpy_to_vtk(np.ascontiguousarray(rgb).reshape(-1, c), deep=True)
    data.SetNumberOfComponents(c)
    image.GetPointData().SetScalars(data)
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", name)
    node.SetSpacing(1.4, 1.4, 1.0)
    node.SetAndObserveImageData(image)
    return node


def test_rgb_volume_becomes_luminance_like_pillow_and_the_core(tmp_path):
    from PIL import Image

    scene = slicer.vtkMRMLScene()
    rgb = np.random.default_rng(3).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    node = rgb_node(scene, rgb)
    assert inputs.is_colour(node)
    grey, note = inputs.grey_volume(node)
    assert grey.array.shape == (1, 1, 24, 32) and grey.array.dtype == np.float32
    assert "RGB" in note and "0.299 R + 0.587 G + 0.114 B" in note
    pillow = np.asarray(Image.fromarray(rgb, "RGB").convert("L"), dtype=np.float32)
    assert np.abs(grey.array[0, 0] - pillow).max() <= 0.5  # Pillow rounds to 8 bits
    png = tmp_path / "xray.png"
    Image.fromarray(rgb, "RGB").save(png)
    core = read_image(png)  # MedXAILib reads an RGB radiograph as grey
    assert np.allclose(grey.array[0, 0], core.array[0, 0], atol=1e-4)
    assert np.array_equal(grey.ijk_to_ras, bridge.ijk_to_ras_of(node))


def test_the_written_input_is_grey_and_the_job_says_so(tmp_path):
    scene = slicer.vtkMRMLScene()
    rgb = np.zeros((8, 8, 4), np.uint8)
    rgb[..., 0], rgb[..., 3] = 200, 255  # red, opaque: alpha is not image content
    node = rgb_node(scene, rgb, "RGBA photo")
    flow = workflow.Workflow(scene, command_prefix=[sys.executable, "-m", "MedXAILib"], temp_root=tmp_path)
    notes: list[str] = []
    (path,) = flow.write_inputs(tmp_path, [node], notes)
    written = read_volume([str(path)])
    assert written.n_channels == 1 and np.allclose(written.array, 0.299 * 200)
    assert notes == [inputs.colour_note(node)] and "RGBA photo" in notes[0]


def test_other_vector_volumes_are_refused_with_one_line():
    scene = slicer.vtkMRMLScene()
    node = rgb_node(scene, np.zeros((4, 4, 2), np.float32), "displacement")
    assert not inputs.is_colour(node)
    with pytest.raises(InputError, match="2 components per voxel"):
        inputs.grey_volume(node)
