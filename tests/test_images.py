"""The library's image writing (`blackbox_vae.images`) leaves the user's matplotlib backend alone."""

import subprocess
import sys

import torch

from blackbox_vae.images import image_grid


def test_writing_sample_images_keeps_the_users_matplotlib_backend(tmp_path):
    # In a fresh process (this one's backend is the command line's "Agg" once cli.plots is imported): a notebook
    # user's backend (here "svg") must survive a sampler writing its images.
    script = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import torch\n"
        "from blackbox_vae.samplers.images import write_images\n"
        f"write_images(torch.rand(3, 16), __import__('pathlib').Path({str(tmp_path)!r}))\n"
        "import matplotlib; print(matplotlib.get_backend())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip().lower() == "svg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000.png", "00001.png", "00002.png", "grid.png"]


def test_image_grid_tiles_grey_and_rgb_images_with_gaps():
    grey = image_grid(torch.ones(3, 4), (2, 2))  # 2 x 2 tiles of 2 x 2 pixels, 1-pixel gaps
    assert grey.shape == (5, 5) and grey[2, 0] == 0.3 and grey[0, 0] == 1.0 and grey[3, 3] == 0.3
    rgb = image_grid(torch.rand(2, 3 * 4), (3, 2, 2))
    assert rgb.shape == (2, 5, 3)
