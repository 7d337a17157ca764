"""Make images/texture1.jpg: a procedural colour texture of stone mosaic.

Voronoi cells on a torus (so the image tiles), each a colour from an earthy
palette, shaded darker towards its border to look rounded, with fine grain.
Deterministic: python images/make_texture1.py rewrites the same file.
"""
import os

import numpy as np
from PIL import Image

SIZE = 256
CELLS = 120
SEED = 2015  # the year of Gatys et al.'s texture paper
PALETTE = np.array([[170, 120, 80], [200, 170, 120], [120, 90, 70], [90, 110, 130],
                    [210, 200, 180], [150, 70, 50], [110, 130, 90]], np.float32) / 255.0


def pebbles(size=SIZE, cells=CELLS, seed=SEED):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (cells, 2))
    colours = PALETTE[rng.integers(0, len(PALETTE), cells)] * rng.uniform(0.85, 1.15, (cells, 1))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    # Distances on a torus: wrap each axis difference into [-size/2, size/2].
    dy = (ys[..., None] - centres[:, 0] + size / 2) % size - size / 2
    dx = (xs[..., None] - centres[:, 1] + size / 2) % size - size / 2
    distance = np.sqrt(dy ** 2 + dx ** 2)                      # [size, size, cells]
    nearest = np.sort(distance, axis=-1)[..., :2]
    owner = np.argmin(distance, axis=-1)
    border = nearest[..., 1] - nearest[..., 0]                  # 0 on a cell border
    shade = np.clip(border / 6.0, 0.0, 1.0) ** 0.5             # rounded falloff
    image = colours[owner] * (0.35 + 0.65 * shade)[..., None]
    image += rng.normal(0.0, 0.03, image.shape)                 # grain
    return np.clip(image, 0.0, 1.0)


if __name__ == '__main__':
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'texture1.jpg')
    Image.fromarray((pebbles() * 255 + 0.5).astype(np.uint8)).save(path, quality=92)
    print(path)
