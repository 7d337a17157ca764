"""The optimisation: build the TF1 graph once per scale, then L-BFGS or Adam on the pixels.

One loop for texture synthesis and style transfer: they differ only in the
Objective (which losses, towards which images).

    objective = Objective.texture(source, {'conv1_1': 1, ...})
    for step, image, losses in synthesize(weights, objective, (256, 256)):
        ...   # image: [H, W, 3] in [0, 1]; losses: {'total': .., layer: ..}

Yields once for the starting image (step 0) and then after every iteration.
Both optimisers are generators themselves (lbfgs.py for L-BFGS), so one loop
in train.py drives either. Within a stage L-BFGS is never restarted, so its
curvature memory is kept.
"""
import concurrent.futures
import contextlib
import dataclasses
import functools
import types

import numpy as np
import utils  # noqa: F401  before TensorFlow: it turns oneDNN on where TensorFlow would not
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2
from threadpoolctl import threadpool_limits

import lbfgs
import losses
import vgg16
from options import OPTIMIZERS, PRECISIONS, STYLE_LOSSES, SWD_WEIGHT, stage_shapes  # noqa: F401  (synthesize.X)
from utils import initial_image as make_initial_image, resize

SWD_SEED = 0  # the projection directions: fixed, so L-BFGS sees one objective and runs repeat
# The course's Adam recipe (pixels in [0, 1]): learning rate by iteration.
ADAM_BOUNDARIES = (200, 1500)
ADAM_LEARNING_RATES = (0.01, 0.005, 0.001)


def session_config():
    """CPU or GPU, whichever TensorFlow sees; on a GPU take memory as needed, not all at once."""
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)  # int64 step counters stay on the CPU
    config.gpu_options.allow_growth = True  # a shared lab GPU keeps room for others
    # Grappler's memory optimiser turns some sums (gram+swd's Gram total plus its SWD) into
    # in-place accumulation (TemporaryVariable + AssignAdd) in whatever order the terms
    # arrive, so the total's rounding changed from process to process and L-BFGS amplified
    # it. Off, every run repeats bitwise, at no measured cost (docs/design.md, `--loss swd`).
    config.graph_options.rewrite_options.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
    return config


@dataclasses.dataclass
class Objective:
    """What the image is optimised towards.

    Texture synthesis is style alone (one style image, the source texture);
    style transfer adds a content image and total variation:

        total = style_weight * sum_l w_l E_l(G_target)         (losses.get_gram_losses)
              + content_weight * sum_l c_l J_content,l         (losses.content_loss_for_layer)
              + tv_weight * TV                                 (losses.total_variation_loss)

    With several style images the target Gram of each layer is their blend,
    G_target = sum_k b_k G_k with the blend weights b_k scaled to sum to 1: this
    has the same minimiser as sum_k b_k E_l(G_k), at 1/K of the graph.
    """
    style_images: list                  # [H, W, 3] arrays in [0, 1], any sizes
    layer_weights: dict                 # {layer: weight} of the Gram (style) loss
    style_blend: list = None            # one weight per style image; None: equal
    style_weight: float = 1.0
    content_image: np.ndarray = None    # [H, W, 3], the output's size
    content_layers: dict = None         # {layer: weight}
    content_weight: float = 0.0
    tv_weight: float = 0.0
    loss: str = 'gram'                  # 'gram', 'swd' or 'gram+swd': how style statistics are matched
    swd_weight: float = None            # 'gram+swd': weight of the SWD part (default SWD_WEIGHT)

    @classmethod
    def texture(cls, source_image, layer_weights, loss='gram', swd_weight=None):
        return cls([source_image], dict(layer_weights), loss=loss, swd_weight=swd_weight)

    @property
    def is_style_transfer(self):
        return self.content_image is not None


def blended_grams(grams_per_image, blend):
    """{layer: sum_k b_k G_k} with b scaled to sum to 1."""
    blend = np.asarray(blend if blend is not None else [1.0] * len(grams_per_image), np.float64)
    blend = blend / blend.sum()
    return {layer: sum(b * grams[layer] for b, grams in zip(blend, grams_per_image)).astype(np.float32)
            for layer in grams_per_image[0]}


def source_statistics(session, shared, objective, pooling='avg', tileable=False):
    """What the objective's losses compare with: the style images' Grams (and, for the SWD,
    feature maps) and the content image's features, as numpy, one forward pass per image.

    `shared` is vgg16.weight_tensors up to the objective's deepest layer, in `session`'s graph.
    """
    style_layers = list(objective.layer_weights)
    content_layers = list(objective.content_layers or {}) if objective.is_style_transfer else []
    deepest = vgg16.deepest(style_layers + content_layers)
    # The images are fed, not made graph constants: grappler would then constant-fold the whole
    # network on its first run (0.5 s per graph at 256 px).
    source = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3], 'source')
    # Tileable: the result has no border, so the source's statistics must not have one either.
    # Zero padding gives them features of a grey frame, which a tileable result imitates
    # with grey smears; circular padding gives them the source's own seam, which it
    # imitates with straight lines. A mirror has neither (docs/design.md, --tileable).
    model = vgg16.Vgg16(shared, pooling, padding='reflect' if tileable else 'zero').build(source, deepest)
    # Gram losses need only the Grams, a fraction of the data to fetch; the SWD needs whole maps.
    wanted = {'grams': {layer: losses.gram_matrix(getattr(model, layer))[0] for layer in style_layers}}
    if objective.loss != 'gram':
        wanted['features'] = {layer: getattr(model, layer)[0] for layer in style_layers}
    statistics = [session.run(wanted, {source: image[None]}) for image in objective.style_images]
    content_features = None
    if content_layers:
        content_features = session.run({layer: getattr(model, layer) for layer in content_layers},
                                       {source: objective.content_image[None]})
    return {'grams': blended_grams([stats['grams'] for stats in statistics], objective.style_blend),
            'style_features': [stats.get('features') for stats in statistics],
            'content_features': content_features}


def objective_losses(shared, objective, statistics, pixels, pooling='avg', precision='float32', tileable=False,
                     normalise_gradients=False):
    """(total, {name: loss}, model) of `objective` for `pixels`: [batch, H, W, 3] in [0, 1],
    every loss a mean over the batch; `model` is the Vgg16 built on `pixels`.

    The one copy of the objective: the pixel optimisation (Graph) and the feed-forward
    generator (feedforward.py) both build it. `statistics` come from source_statistics.
    normalise_gradients (the generator's training): the losses are the same, but the gradient
    each style layer's losses send back is rescaled to the layer's share of the weights
    (losses.with_unit_gradient), so no layer's loss drowns the others.
    """
    style_layers = list(objective.layer_weights)
    content_layers = dict(objective.content_layers or {}) if objective.is_style_transfer else {}
    deepest = vgg16.deepest(style_layers + list(content_layers))
    # Source statistics stay float32; only the optimised images' network may run in bfloat16.
    model = vgg16.Vgg16(shared, pooling, precision, 'circular' if tileable else 'zero').build(pixels, deepest)
    features = model
    if normalise_gradients:
        weight_sum = sum(objective.layer_weights.values())
        features = types.SimpleNamespace(**{
            layer: losses.with_unit_gradient(getattr(model, layer), weight / weight_sum)
            for layer, weight in objective.layer_weights.items()})
    # The Gram losses sum over the batch; a mean keeps every loss the same number at any batch size.
    batch = tf.cast(tf.shape(pixels)[0], tf.float32)
    named = {'total': None}
    style, per_layer = 0.0, {}
    if objective.loss in ('gram', 'gram+swd'):
        per_layer = {layer: losses.get_l2_gram_loss_for_layer(features, statistics['grams'], layer) / batch
                     for layer in style_layers}
        style = tf.add_n([weight * per_layer[layer] for layer, weight in objective.layer_weights.items()])
    if objective.loss in ('swd', 'gram+swd'):
        swd, swd_per_layer = _swd(features, statistics['style_features'], objective)
        per_layer.update({f'swd_{layer}': loss for layer, loss in swd_per_layer.items()})
        named['swd'] = swd
        style = style + (swd if objective.loss == 'swd' else (objective.swd_weight or SWD_WEIGHT) * swd)
    terms = [objective.style_weight * style]
    if objective.is_style_transfer:
        content_per_layer = {layer: losses.content_loss_for_layer(
            getattr(model, layer), statistics['content_features'][layer]) for layer in content_layers}
        content = tf.add_n([weight * content_per_layer[layer] for layer, weight in content_layers.items()])
        tv = losses.total_variation_loss(pixels)
        terms += [objective.content_weight * content, objective.tv_weight * tv]
        named.update(style=style, content=content, tv=tv)
        if len(content_layers) > 1:
            named.update({f'content_{layer}': loss for layer, loss in content_per_layer.items()})
    total = tf.add_n(terms)
    named.update(total=total, **per_layer)
    return total, named, model


def _swd(model, style_features, objective):
    """(weighted SWD, {layer: SWD}) of `model`'s features against the blended style feature distributions."""
    rng = np.random.default_rng(SWD_SEED)
    per_layer = {}
    for layer in objective.layer_weights:
        features = getattr(model, layer)
        channels = features.shape[-1]
        directions = rng.normal(size=(channels, channels))  # as many directions as channels
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        positions = int(np.prod(features.shape[1:3]))
        targets = losses.quantile_targets(
            [losses.sorted_projections(source[layer], directions) for source in style_features],
            positions, objective.style_blend)
        per_layer[layer] = losses.sliced_wasserstein_loss_for_layer(features, targets, directions)
    total = tf.add_n([weight * per_layer[layer] for layer, weight in objective.layer_weights.items()])
    return total, per_layer


class Graph:
    """The synthesis graph: one image variable, its losses and their gradient."""

    def __init__(self, weights, objective, output_shape, pooling='avg', optimizer='lbfgs', precision='float32',
                 tileable=False):
        self.graph = tf.Graph()
        self.precision = precision
        content_layers = list(objective.content_layers or {}) if objective.is_style_transfer else []
        with self.graph.as_default():
            shared = vgg16.weight_tensors(weights, up_to=vgg16.deepest(list(objective.layer_weights) + content_layers))
            self.session = tf.compat.v1.Session(graph=self.graph, config=session_config())
            statistics = source_statistics(self.session, shared, objective, pooling, tileable)
            height, width = output_shape
            self.image = tf.compat.v1.get_variable(
                'image', [1, height, width, 3], tf.float32, trainable=True,
                initializer=tf.compat.v1.zeros_initializer())
            # L-BFGS runs without bounds (see _lbfgs): the losses are those of the image clipped to
            # valid pixels, which is the image handed on, so each reported loss is that image's.
            pixels = tf.clip_by_value(self.image, 0.0, 1.0)
            self.total, self.losses, self.noise_model = objective_losses(
                shared, objective, statistics, pixels, pooling, precision, tileable)
            self.gradient = tf.gradients(self.total, self.image)[0]

            self.new_image = tf.compat.v1.placeholder(tf.float32, [1, height, width, 3], 'new_image')
            self.assign = self.image.assign(self.new_image)
            if optimizer == 'adam':  # L-BFGS needs none of this: it only asks for loss and gradient
                self.step = tf.compat.v1.placeholder(tf.int64, [], 'step')
                learning_rate = tf.compat.v1.train.piecewise_constant(
                    self.step, list(ADAM_BOUNDARIES), list(ADAM_LEARNING_RATES))
                adam_step = tf.compat.v1.train.AdamOptimizer(learning_rate).minimize(
                    self.total, var_list=[self.image])
                with tf.control_dependencies([adam_step]):
                    # Adam has no bounds: project back onto valid pixels after each step.
                    self.adam_update = self.image.assign(tf.clip_by_value(self.image, 0.0, 1.0))
            self.session.run(tf.compat.v1.global_variables_initializer())
        self.graph.finalize()  # nothing may add ops inside the loop

    def set_image(self, image):
        self.session.run(self.assign, {self.new_image: image[None]})

    def evaluate(self):
        """({'total': float, layer: float, ...}, gradient [1, H, W, 3])."""
        values, gradient = self.session.run([self.losses, self.gradient])
        return {name: float(value) for name, value in values.items()}, gradient

    def close(self):
        self.session.close()


def _adam(graph, start, iterations):
    """Adam with the course's schedule; one forward+backward pass per step.

    The losses fetched with an update come from the same forward pass, so
    they belong to the image *before* that update: yield them with it.
    """
    image = start
    for step in range(1, iterations + 1):
        _, values = graph.session.run([graph.adam_update, graph.losses], {graph.step: step - 1})
        yield step - 1, image, {name: float(value) for name, value in values.items()}
        image = graph.session.run(graph.image)[0]
    yield iterations, image, graph.evaluate()[0]


def _lbfgs(graph, start, iterations):
    """L-BFGS (lbfgs.py) on the pixels, one step per iteration.

    Unconstrained: with [0, 1] box bounds scipy's L-BFGS-B took 0.7 s to set up
    (a Python loop over the pixels) and 13 ms more per iteration at 256 px, while
    unconstrained runs leave [0, 1] on about 0.01% of the pixels, by about 0.015
    (texture1, texture3). The graph scores the image clipped to [0, 1], which is
    the image handed on, so each reported loss is that image's.
    """
    shape = start.shape

    def evaluate(x):
        graph.set_image(x.reshape(shape).astype(np.float32))
        values, gradient = graph.evaluate()
        return values['total'], gradient.ravel().astype(np.float64), values

    values, gradient = graph.evaluate()  # of `start`, which the caller has set
    yield 0, start, values
    # numpy's vector work goes to OpenBLAS, whose extra threads keep spinning after it and take
    # cores from TensorFlow: with one BLAS thread texture4's default run took 13 s, not 20 (docs/benchmarks.md).
    with threadpool_limits(limits=1, user_api='blas'):
        steps = lbfgs.minimize(evaluate, start, iterations,
                               start=(values['total'], gradient.ravel().astype(np.float64), values))
        for step, (x, values) in enumerate(steps, 1):
            yield step, np.clip(x.reshape(shape), 0.0, 1.0).astype(np.float32), values


def coarse_style_layers(layer_weights):
    """The style layers of a coarse stage: all but those in the deepest VGG block used.

    Each pooling doubles what a layer sees, so at half size conv3_x sees, in the source's
    pixels, about what conv4_1 sees at full size. The deepest block would constrain structures
    wider than anything the full-size objective asks for, and at a small size it sees so few
    positions that its Grams pin down the source's layout. Measured without conv4_1 at the
    coarse stages (docs/benchmarks.md): the baseline's loss reached 0.2-1 s sooner at 256 px and
    1-3 s sooner at 512 px, with about the same final losses and layout scores; also leaving
    out conv3_x at a quarter size ended texture1 at 512 px 13% higher. If every layer is in
    the deepest block, a coarse stage keeps them all.
    """
    deepest_block = vgg16.downsampling(vgg16.deepest(list(layer_weights)))
    kept = {layer: weight for layer, weight in layer_weights.items() if vgg16.downsampling(layer) < deepest_block}
    return kept or dict(layer_weights)


def scaled_objective(objective, scale):
    """The objective at a coarse stage: every image scaled by `scale` (the texture keeps its
    size in pixels relative to the output, so a coarse stage sees the same texture, only
    smaller), and the style layers that suit that size (coarse_style_layers)."""
    if scale == 1:
        return objective
    rescale = lambda image: resize(image, tuple(max(1, round(side * scale)) for side in image.shape[:2]))  # noqa: E731
    return dataclasses.replace(
        objective, style_images=[rescale(image) for image in objective.style_images],
        layer_weights=coarse_style_layers(objective.layer_weights),
        content_image=None if objective.content_image is None else rescale(objective.content_image))


def synthesize(weights, objective, output_shape, pooling='avg', optimizer='lbfgs',
               iterations=200, seed=0, init='mean-noise', initial_image=None,
               scales=(1.0,), precision='float32', tileable=False):
    """Optimise an image towards `objective` (an Objective); yields (step, image, losses).

    The start is `initial_image` if given, else noise of kind `init` around the
    first style image's colours (utils.initial_image).

    Coarse to fine (Snelgrove 2017): with scales=(0.5, 1) the image is first
    optimised at half size (a quarter of the pixels, about a quarter of the cost
    per iteration) against the style images at half size, then upsampled and
    finished at full size. `iterations` is one count per scale, or one for all.
    Steps count on across scales; with several scales each losses dict also
    holds the 'scale' it was computed at (losses at different scales differ).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {optimizer!r}")
    iterations = list(iterations) if np.ndim(iterations) else [iterations] * len(scales)
    if len(iterations) != len(scales):
        raise ValueError(f"{len(iterations)} iteration counts for {len(scales)} scales")
    step_size = vgg16.tileable_size_step(vgg16.deepest(list(objective.layer_weights))) if tileable else 1
    shapes = stage_shapes(output_shape, scales, step_size)
    objectives = [scaled_objective(objective, scale) for scale in scales]

    def build(stage, stage_precision):
        return Graph(weights, objectives[stage], shapes[stage], pooling, optimizer, stage_precision, tileable)

    image, offset = initial_image, 0
    # Each stage's graph is built on a second thread while the stage before it runs: building
    # one takes 0.4 s at 256 px, mostly Python and graph optimisation, and a coarse stage's small
    # kernels leave the CPU partly idle (texture4 reached full size 0.35 s sooner, docs/benchmarks.md).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as builder:
        prepared = builder.submit(build, 0, precision)
        try:
            for stage, (scale, shape, stage_iterations) in enumerate(zip(scales, shapes, iterations)):
                if image is None:
                    image = make_initial_image(objectives[stage].style_images[0], (*shape, 3), seed, init)
                elif image.shape[:2] != shape:
                    image = resize(image, shape, wrap=tileable)
                graph, prepared = prepared.result(), None
                if stage + 1 < len(scales):
                    prepared = builder.submit(build, stage + 1, precision)
                rebuild = functools.partial(build, stage)
                with contextlib.closing(_run_stage(graph, rebuild, image, stage_iterations, optimizer)) as run:
                    for step, image, values in run:
                        if step == 0 and stage:
                            continue  # the previous stage's last step already reported this image
                        yield offset + step, image, {**values, 'scale': scale} if len(scales) > 1 else values
                offset += step
        finally:
            if prepared is not None and prepared.exception() is None:  # stopped early: not needed
                prepared.result().close()


def _run_stage(graph, rebuild, image, iterations, optimizer):
    """One stage on `graph`, which it closes; yields (step, image, losses) from step 0.

    L-BFGS's line search gives up when bfloat16 rounding hides the progress:
    such a run is finished in float32, on rebuild('float32').
    """
    done, first_run = 0, True
    while True:
        try:
            graph.set_image(image)
            optimise = _adam if optimizer == 'adam' else _lbfgs
            with contextlib.closing(optimise(graph, image, iterations - done)) as run:  # ends its thread first
                for step, image, values in run:
                    if step == 0 and not first_run:
                        continue  # the stalled run's last step already reported this image
                    yield done + step, image, values
            done, first_run = done + step, False
        finally:
            graph.close()
        if done < iterations and graph.precision == 'bfloat16':
            graph = rebuild('float32')
        else:
            return
