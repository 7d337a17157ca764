"""How close is a result to its source texture, and is it a copy? Pure numpy.

Every score is a distance: 0 for the source itself, lower is better. Images
are float arrays [H, W, 3] in [0, 1]; feature maps are [H, W, N]. Result and
source may differ in size: every score compares distributions or statistics,
never pixels at the same place.

    gram_distance          the training objective (flatters whatever minimised it)
    sliced_wasserstein     whole feature distributions (Heitz et al. 2021)
    colour_distance        pixel colour histograms
    spectral_distance      radially averaged power spectrum: periodic structure
    nearest_patch_distance how far the result's patches are from any source patch
    layout_score           best correlation of thumbnails over shifts, flips, transposes
    layout_chance          what layout_score gives, by chance, for arrangements with no layout
    pairwise_distance      how different images of one size are from each other (a generator's diversity)
"""
import numpy as np
from PIL import Image

# Fixed seed for the random projections: the same images always score the same.
PROJECTION_SEED = 0
# Quantiles compared per distribution: enough for 256 px images, cheap at any size.
QUANTILES = 1024
SPECTRUM_BINS = 32            # radial frequency bins between 0 and the Nyquist frequency
PATCH_SIZE, PATCH_STRIDE = 8, 4
MAX_PATCHES = 4096            # a random subset beyond this keeps the distance matrix small
COPY_PATCHES = 1024           # copy_search's patch comparison: enough for a mean, 4x cheaper than all
# A patch is copied when its nearest source patch is this close (relative to the source's variance):
# train.py's results on six textures have none of their textured patches that close, collages of
# the source's 16-64 px pieces 48-91% of them (docs/benchmarks.md).
COPIED_DISTANCE = 0.005
TEXTURED_PATCH = 0.1          # a patch with less of the source's variance is too plain to tell
THUMBNAIL_SIZE = 32           # the source's shorter side in the layout thumbnails
# The layout line for textures whose thumbnails are fine-grained (noise and plain synthesis of
# such a texture score about 0.15). Large, smooth structures score more by chance: layout_limit.
LAYOUT_LINE = 0.25
CHANCE_SAMPLES = 32           # random-phase samples behind layout_chance
CHANCE_PERCENTILE = 90        # a result above this share of no-layout samples is suspect
# The scales a copy is searched at: 0.25x to 4x, each 2^(1/4) from the next (copy_search).
COPY_FACTORS = tuple(2 ** (k / 4) for k in range(-8, 9))
# The scales refined around, and by how many steps of 2^(1/32) each way (to the grid's midpoints).
COPY_CANDIDATES, REFINE_STEPS = 3, 4
# The smallest thumbnail a result is matched with. Random-phase noise of texture4 lines up with the
# source by chance at up to 0.79 for 8 px thumbnails, 0.6 for 16 px, 0.59 for 24 px (with the
# refinement); copies of texture1-4 at 0.25x-4x score 0.78 or more (docs/benchmarks.md).
MIN_TEMPLATE = 24
MAX_THUMBNAIL = 6 * THUMBNAIL_SIZE  # the source's thumbnail when a small result asks for detail


def gram(features):
    """[H, W, N] -> F^T F / (N M), as in losses.gram_matrix."""
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    return flat.T @ flat / flat.size


def gram_distance(result_features, source_features):
    """sum((G_s - G_r)^2) / 4: one layer's training loss."""
    return float(np.sum((gram(source_features) - gram(result_features)) ** 2) / 4)


def quantiles(values, count=QUANTILES):
    """Quantiles of each column of [M, K] at `count` evenly spaced levels -> [count, K].

    The empirical quantile function (np.quantile's 'inverted_cdf': the smallest value whose
    share of values at or below it reaches the level), read off one sort: np.quantile
    partitions once per level, 7x slower for conv1_1's 65536 x 64 projections.
    """
    levels = (np.arange(count) + 0.5) / count
    ranks = np.clip(np.ceil(len(values) * levels).astype(int) - 1, 0, len(values) - 1)
    return np.sort(values, axis=0)[ranks]


def sliced_wasserstein(result_features, source_features, projections=None, seed=PROJECTION_SEED):
    """Mean over random unit directions of the squared 1-D Wasserstein-2 distance.

    Both [H, W, N] feature maps are projected on N random directions (seeded, so
    scores repeat); each projection's distribution is compared through its
    quantiles, so the two maps may have different numbers of positions.
    """
    channels = source_features.shape[-1]
    if projections is None:
        projections = random_directions(channels, channels, seed)
    result = result_features.reshape(-1, channels).astype(np.float64) @ projections
    source = source_features.reshape(-1, channels).astype(np.float64) @ projections
    return float(np.mean((quantiles(result) - quantiles(source)) ** 2))


def random_directions(dimension, count, seed=PROJECTION_SEED):
    directions = np.random.default_rng(seed).normal(size=(dimension, count))
    return directions / np.linalg.norm(directions, axis=0, keepdims=True)


def colour_distance(result, source):
    """Mean over R, G, B of the 1-D Wasserstein-1 distance between pixel values."""
    return float(np.mean(np.abs(quantiles(result.reshape(-1, 3)) - quantiles(source.reshape(-1, 3)))))


def grey(image):
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def radial_power_spectrum(image, bins=SPECTRUM_BINS):
    """Mean power of the grey image's spectrum in `bins` rings from 0 to Nyquist, summing to 1.

    Frequencies are in cycles per pixel, so images of different sizes compare;
    normalised, so contrast is left to the other scores and this one sees only
    how variation spreads over scales (and periodic peaks).
    """
    signal = grey(image)
    signal = signal - signal.mean()
    power = np.abs(np.fft.fft2(signal)) ** 2
    fy = np.fft.fftfreq(signal.shape[0])[:, None]
    fx = np.fft.fftfreq(signal.shape[1])[None, :]
    radius = np.sqrt(fy ** 2 + fx ** 2)
    ring = np.minimum((radius / 0.5 * bins).astype(int), bins)  # bin `bins`: the corners past Nyquist
    totals = np.bincount(ring.ravel(), power.ravel(), bins + 1)[:bins]
    counts = np.maximum(np.bincount(ring.ravel(), minlength=bins + 1)[:bins], 1)
    spectrum = totals / counts
    return spectrum / max(spectrum.sum(), 1e-12)


def spectral_distance(result, source):
    """Mean absolute difference of log10 radial power spectra (0: the same spread over scales)."""
    floor = 1e-12  # a perfectly flat image has no power anywhere
    return float(np.mean(np.abs(np.log10(radial_power_spectrum(result) + floor)
                                - np.log10(radial_power_spectrum(source) + floor))))


def patches(image, size=PATCH_SIZE, stride=PATCH_STRIDE, count=None, seed=PROJECTION_SEED):
    """size x size patches on a stride grid, flattened -> [P, size * size * 3]; with `count`, a
    random subset of at most that many, chosen before any is copied (a 4096 px result has 1 M)."""
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))[::stride, ::stride]
    rows, columns = windows.shape[:2]
    if count is not None and rows * columns > count:
        chosen = np.random.default_rng(seed).choice(rows * columns, count, replace=False)
        windows = windows[chosen // columns, chosen % columns]
    return windows.reshape(-1, size * size * image.shape[-1]).astype(np.float64)


def nearest_patch_distance(result, source, seed=PROJECTION_SEED, queries=MAX_PATCHES, stride=None):
    """Mean over the result's patches (at most `queries` of them) of the squared distance to the
    nearest source patch, relative to the source's pixel variance (per value): 0 for a copy, crop
    or shifted copy."""
    return float(nearest_patch_distances(result, source, seed, queries, stride)[0].mean())


def nearest_patch_distances(result, source, seed=PROJECTION_SEED, queries=MAX_PATCHES, stride=None):
    """For each of the result's patches (at most `queries` of them): the squared distance to the
    nearest source patch, and the patch's own variance, both relative to the source's pixel
    variance (per value). Two arrays [P].

    The source's patches are taken at every position (stride 1, or 2 for sources
    over 512 px), so a copy shifted by any amount finds its patches exactly.
    """
    if stride is None:
        stride = 1 if source.shape[0] * source.shape[1] <= 512 * 512 else 2
    candidates = patches(source, stride=stride).astype(np.float32)
    queries = patches(result, count=queries, seed=seed).astype(np.float32)
    candidate_norms = (candidates ** 2).sum(1)
    nearest = []
    for block in np.array_split(queries, max(1, len(queries) // 256)):  # [256, P] distances at a time
        squared = (block ** 2).sum(1)[:, None] - 2 * block @ candidates.T + candidate_norms[None]
        nearest.append(np.maximum(squared.min(axis=1), 0.0))
    variance = max(source.var(), 1e-12)
    # A patch is flattened channel by channel ([C, size, size]: patches): each channel's variance, averaged.
    own = queries.reshape(len(queries), source.shape[-1], -1).var(axis=2).mean(axis=1)
    return np.concatenate(nearest) / (queries.shape[1] * variance), own / variance


def copied_share(distances, variances):
    """The share of the result's textured patches (own variance at least TEXTURED_PATCH of the
    source's) that are in the source pixel for pixel (distance under COPIED_DISTANCE): a collage
    of the source's pieces scores the share of patches inside its pieces, a new texture about 0.
    Flat patches do not count: a plain patch is found in any source with plain parts."""
    textured = variances >= TEXTURED_PATCH
    return float((distances[textured] < COPIED_DISTANCE).mean()) if textured.any() else 0.0


def thumbnail(image, scale):
    """Grey image scaled by `scale`, zero mean and unit norm (for correlations)."""
    height, width = image.shape[:2]
    size = (max(4, round(width * scale)), max(4, round(height * scale)))
    small = np.asarray(Image.fromarray(grey(image).astype(np.float32)).resize(size, Image.BILINEAR), np.float64)
    return small


def layout_score(result, source, size=THUMBNAIL_SIZE):
    """Best normalised correlation between the source's and result's thumbnails,
    over every cyclic shift and the 8 flips/transposes: 1.0 for the source
    itself (or a shifted, flipped, cropped copy), about 0.1-0.3 for a new texture.

    Both are scaled by the same factor (the source's shorter side to `size`),
    so a crop or a larger canvas keeps its scale; the smaller thumbnail then
    slides cyclically over the larger one.
    """
    return layout_match(result, source, 1.0, size)[0]


def layout_match(result, source, factor, size=THUMBNAIL_SIZE):
    """(layout score, index of the best of the 8 dihedral transforms) with the result taken to be
    the source at `factor` times its scale: the result's thumbnail is made 1/factor times as large
    as the source's scale asks, so a copy resized by `factor` lines up with the source again."""
    scale = size / min(source.shape[:2])
    # A small result at a large factor (a crop of an upscaled source) would make a tiny template:
    # give it MIN_TEMPLATE px and the source as much more detail, up to MAX_THUMBNAIL.
    scale = max(scale, MIN_TEMPLATE * factor / min(result.shape[:2]))
    if scale * min(source.shape[:2]) > MAX_THUMBNAIL:
        return -1.0, 0
    source_small, result_small = thumbnail(source, scale), thumbnail(result, scale / factor)
    best, best_index = -1.0, 0
    for index, transformed in enumerate(dihedral(result_small)):
        small, large = sorted([transformed, source_small], key=lambda a: a.size)
        if small.shape[0] > large.shape[0] or small.shape[1] > large.shape[1]:
            small = small[:large.shape[0], :large.shape[1]]  # the overlap of a different aspect ratio
        score = float(cyclic_correlation(small, large).max())
        if score > best:
            best, best_index = score, index
    return best, best_index


def copy_search(result, source, factors=COPY_FACTORS):
    """Is the result the source (or a crop, shift, flip, rotation, colour-jittered or blurred copy)
    at some other scale? Or a collage of its pieces? {'copy_layout': the best layout score over the
    scales, 'copy_scale': where, 'copy_patch': nearest_patch_distance at that scale and transform,
    'copy_share': copied_share there, or of the result as it is where that is higher}.

    The best COPY_CANDIDATES of `factors` are refined in steps of 2^(1/32), to within 1.1% of any
    scale: the thumbnails of a fine-grained texture decorrelate at a scale error of a few per cent
    (gravel, texture2, copied at 2.5x: 0.51 on the 2^(1/4) grid, 0.86 refined). The patches are
    compared at the best scale, the larger image scaled down to the smaller one's scale and turned
    as the best layout match was.
    """
    coarse = sorted(((layout_match(result, source, factor), factor) for factor in factors),
                    key=lambda match: -match[0][0])
    candidates = list(coarse)
    for _, factor in coarse[:COPY_CANDIDATES]:
        candidates += [(layout_match(result, source, factor * 2 ** (k / 32)), factor * 2 ** (k / 32))
                       for k in range(-REFINE_STEPS, REFINE_STEPS + 1) if k]
    (layout, index), factor = max(candidates, key=lambda match: match[0][0])
    turned = list(dihedral(result))[index]
    if factor < 1:
        distances, variances = nearest_patch_distances(turned, resized(source, factor), queries=COPY_PATCHES)
    else:
        distances, variances = nearest_patch_distances(resized(turned, 1 / factor), source, queries=COPY_PATCHES)
    share = copied_share(distances, variances)
    if factor != 1 or index != 0:  # a collage lines up nowhere: its pieces are looked for as they are, too
        share = max(share, copied_share(*nearest_patch_distances(result, source, queries=COPY_PATCHES)))
    return {'copy_layout': layout, 'copy_scale': factor, 'copy_patch': float(distances.mean()), 'copy_share': share}


def resized(image, factor):
    """[H, W, C] float image scaled by `factor` (Lanczos per channel), at least 8 px a side."""
    height, width = (max(PATCH_SIZE, round(side * factor)) for side in image.shape[:2])
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), 'F')
                           .resize((width, height), Image.LANCZOS)) for c in range(image.shape[-1])]
    return np.stack(channels, axis=-1)


def random_phase(source, shape, seed=PROJECTION_SEED):
    """A grey texture of `shape` with the source's power spectrum and no arrangement at all.

    Asymptotic discrete spot noise (Galerne, Gousseau and Morel 2011): white
    Gaussian noise cyclically convolved with the source's zero-mean grey image,
    scaled by 1/sqrt(pixels), so its expected autocorrelation (hence spectrum)
    and variance are the source's, and its mean is exactly the source's. Every
    trace of where things were in the source is gone. [H, W, 3], grey in all three.
    """
    source_grey = grey(source)
    height, width = max(shape[0], source_grey.shape[0]), max(shape[1], source_grey.shape[1])
    spot = np.zeros((height, width))
    spot[:source_grey.shape[0], :source_grey.shape[1]] = (source_grey - source_grey.mean()) / np.sqrt(source_grey.size)
    noise = np.random.default_rng(seed).normal(size=(height, width))
    sample = np.real(np.fft.ifft2(np.fft.fft2(spot) * np.fft.fft2(noise)))[:shape[0], :shape[1]]
    return np.repeat((sample + source_grey.mean())[..., None], 3, axis=2)


def layout_chance(source, shape, samples=CHANCE_SAMPLES, seed=PROJECTION_SEED):
    """layout_score of `samples` random-phase textures of `shape` against the source: [samples].

    The score's level for a result that keeps the source's spectrum but none of its
    layout. It depends on the texture: fine gravel about 0.18, smooth cell clusters
    about 0.39 at 256 px, because few independent thumbnail pixels and 8 x H x W
    tries make a high best correlation likely.
    """
    return np.array([layout_score(random_phase(source, shape, seed + index), source)
                     for index in range(samples)])


def layout_limit(source, shape):
    """The highest layout score a new texture of `shape` should have: LAYOUT_LINE, or the
    CHANCE_PERCENTILE of layout_chance where the texture's structure is too smooth for it."""
    return max(LAYOUT_LINE, float(np.percentile(layout_chance(source, shape), CHANCE_PERCENTILE)))


def dihedral(image):
    """The 8 flips and rotations of an image ([H, W] or [H, W, C]), always in the same order."""
    for turned in (image, np.swapaxes(image, 0, 1)):
        for flipped in (turned, turned[::-1], turned[:, ::-1], turned[::-1, ::-1]):
            yield flipped


def cyclic_correlation(template, image):
    """Normalised correlation of `template` with every cyclic window of `image` (same or larger).

    For each offset: Pearson correlation between the template and the window of
    `image` it covers, wrapping around the edges. FFTs make it O(n log n).
    """
    height, width = template.shape
    template = template - template.mean()
    template = template / max(np.linalg.norm(template), 1e-12)
    padded = np.zeros_like(image)
    padded[:height, :width] = template
    mask = np.zeros_like(image)
    mask[:height, :width] = 1.0
    spectrum = np.fft.fft2(image)
    squares = np.fft.fft2(image ** 2)

    def correlate(kernel, transformed):  # sum over the window at every offset
        return np.real(np.fft.ifft2(transformed * np.conj(np.fft.fft2(kernel))))

    products = correlate(padded, spectrum)        # sum(template * window); the template has zero mean
    window_sum = correlate(mask, spectrum)
    window_squares = correlate(mask, squares)
    count = height * width
    window_norm = np.sqrt(np.maximum(window_squares - window_sum ** 2 / count, 1e-12))
    return products / window_norm


def pairwise_distance(feature_maps):
    """Mean over every pair of same-shape [H, W, N] feature maps of their mean squared difference.

    A generator's diversity: its samples against each other, compared with the same figure for
    crops of the source (different places of one texture). Near 0: every noise gives one image.
    """
    maps = [np.asarray(features, np.float64) for features in feature_maps]
    distances = [np.mean((a - b) ** 2) for index, a in enumerate(maps) for b in maps[index + 1:]]
    return float(np.mean(distances))
