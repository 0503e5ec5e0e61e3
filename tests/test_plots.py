"""The image figures of the command line and benchmarks (blackbox_vae.cli.plots)."""

import matplotlib.image
import pytest
import torch

from blackbox_vae.cli.plots import image_grid, save_image_grids


def test_image_grid_tiles_images_row_by_row_with_gaps():
    images = torch.arange(5.0).repeat_interleave(6).reshape(5, 6)  # 5 images of 2 x 3, image i filled with i
    grid = image_grid(images, (2, 3), columns=2)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1)  # 3 rows and 2 columns of 2 x 3 images, 1-pixel gaps
    assert grid[0, 0] == 0 and grid[0, 4] == 1 and grid[3, 0] == 2 and grid[6, 4] == 0.3  # the 6th cell is empty


@pytest.mark.parametrize("columns, rows", [(None, 1), (3, 2), (5, 1)])
def test_save_image_grids_lays_panels_out_in_rows(tmp_path, columns, rows):
    panels = [(f"panel {i}", torch.rand(4, 16)) for i in range(5)]
    path = tmp_path / "grids.png"
    save_image_grids(panels, (4, 4), path, columns=columns, title="five panels", panel_size=(2.0, 2.5))
    height, width = matplotlib.image.imread(path).shape[:2]
    assert (width, height) == (2.0 * 120 * (columns or 5), 2.5 * 120 * rows)  # 120 dots per inch
