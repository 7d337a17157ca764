"""Luminance-only style transfer (Gatys et al. 2017, "Controlling Perceptual Factors", sec. 5.1).

Style transfer also copies the painting's colours. To keep the photo's colours
instead: transfer on luminance only, then put the photo's chroma back.

    content_grey, style_grey = luminance_inputs(content, styles)   # grey RGB images
    result = recolour(optimised_grey_result, content)

YIQ is the colour space the paper uses: Y is luminance, I and Q carry the colour.
"""
import numpy as np

# NTSC RGB -> YIQ; rows give Y, I, Q.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]], np.float64)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_yiq(image):
    return (image.astype(np.float64) @ RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(image):
    return (image.astype(np.float64) @ YIQ_TO_RGB.T).astype(np.float32)


def luminance(image):
    return rgb_to_yiq(image)[..., 0]


def grey(luminance_map):
    """[H, W] luminance -> [H, W, 3] grey RGB (what VGG16 sees of it)."""
    return np.repeat(np.clip(luminance_map, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)


def match_luminance(style_luminance, content_luminance):
    """Shift and scale the style's luminance to the content's mean and standard deviation.

    The paper's step before transfer: otherwise a dark painting darkens the photo.
    """
    scale = content_luminance.std() / max(style_luminance.std(), 1e-6)
    return (style_luminance - style_luminance.mean()) * scale + content_luminance.mean()


def luminance_inputs(content, styles):
    """(grey content, [grey styles matched to the content's luminance])."""
    content_luminance = luminance(content)
    return grey(content_luminance), [grey(match_luminance(luminance(style), content_luminance))
                                     for style in styles]


def recolour(result, content):
    """The result's luminance with the content's chroma (I, Q), back in RGB [0, 1]."""
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = luminance(result)
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0)


def match_histograms(image, reference):
    """Each channel of `image` mapped so its value distribution is `reference`'s (rank-preserving)."""
    matched = np.empty_like(image, dtype=np.float32)
    for channel in range(image.shape[-1]):
        values = image[..., channel].ravel()
        ranks = np.argsort(np.argsort(values, kind='stable'), kind='stable')
        levels = (ranks + 0.5) / values.size
        reference_sorted = np.sort(reference[..., channel].ravel())
        positions = np.minimum((levels * reference_sorted.size).astype(int), reference_sorted.size - 1)
        matched[..., channel] = reference_sorted[positions].reshape(image.shape[:-1])
    return matched
