"""The optimisation: build the TF1 graph once, then L-BFGS-B or Adam on the pixels.

One loop for texture synthesis and style transfer: they differ only in the
Objective (which losses, towards which images).

    objective = Objective.texture(source, {'conv1_1': 1, ...})
    for step, image, losses in synthesize(weights, objective, (256, 256)):
        ...   # image: [H, W, 3] in [0, 1]; losses: {'total': .., layer: ..}

Yields once for the starting image (step 0) and then after every iteration.
L-BFGS runs inside one scipy call (never restarted, so its curvature memory
is kept), which hands back control through a callback; a small worker thread
turns that callback into this generator, so both optimisers are driven by the
same loop in train.py. The thread only runs while the caller asks for the next
step, so the session is never used by two threads at once.
"""
import dataclasses
import queue
import threading

import numpy as np
import scipy.optimize
import tensorflow as tf

import losses
import vgg16
from utils import initial_image as make_initial_image

OPTIMIZERS = ('lbfgs', 'adam')
# The course's Adam recipe (pixels in [0, 1]): learning rate by iteration.
ADAM_BOUNDARIES = (200, 1500)
ADAM_LEARNING_RATES = (0.01, 0.005, 0.001)
# L-BFGS-B stops early on tiny relative progress (ftol) or gradient (gtol);
# Gram losses keep improving in small relative steps, so run the iterations asked for.
LBFGS_OPTIONS = {'ftol': 0.0, 'gtol': 0.0, 'maxcor': 10}


def session_config():
    """CPU or GPU, whichever TensorFlow sees; on a GPU take memory as needed, not all at once."""
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)  # int64 step counters stay on the CPU
    config.gpu_options.allow_growth = True  # a shared lab GPU keeps room for others
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

    @classmethod
    def texture(cls, source_image, layer_weights):
        return cls([source_image], dict(layer_weights))

    @property
    def is_style_transfer(self):
        return self.content_image is not None


def blended_grams(grams_per_image, blend):
    """{layer: sum_k b_k G_k} with b scaled to sum to 1."""
    blend = np.asarray(blend if blend is not None else [1.0] * len(grams_per_image), np.float64)
    blend = blend / blend.sum()
    return {layer: sum(b * grams[layer] for b, grams in zip(blend, grams_per_image)).astype(np.float32)
            for layer in grams_per_image[0]}


class Graph:
    """The synthesis graph: one image variable, its losses and their gradient."""

    def __init__(self, weights, objective, output_shape, pooling='avg', optimizer='lbfgs'):
        self.graph = tf.Graph()
        style_layers = list(objective.layer_weights)
        content_layers = dict(objective.content_layers or {}) if objective.is_style_transfer else {}
        deepest = vgg16.deepest(style_layers + list(content_layers))
        with self.graph.as_default():
            shared = vgg16.weight_tensors(weights)
            self.session = tf.compat.v1.Session(graph=self.graph, config=session_config())
            # Source statistics: one forward pass per image now, constants afterwards.
            target_grams = blended_grams(
                [losses.source_grams(self.session, vgg16.Vgg16(shared, pooling).build(
                    tf.constant(image[None]), deepest), style_layers)
                 for image in objective.style_images],
                objective.style_blend)
            if content_layers:
                content_model = vgg16.Vgg16(shared, pooling).build(
                    tf.constant(objective.content_image[None]), deepest)
                content_features = self.session.run(
                    {layer: getattr(content_model, layer) for layer in content_layers})

            height, width = output_shape
            self.image = tf.compat.v1.get_variable(
                'image', [1, height, width, 3], tf.float32, trainable=True,
                initializer=tf.compat.v1.zeros_initializer())
            self.noise_model = vgg16.Vgg16(shared, pooling).build(self.image, deepest)
            style, per_layer = losses.get_gram_losses(
                self.noise_model, target_grams, style_layers, objective.layer_weights)
            self.losses = {'total': None}
            terms = [objective.style_weight * style]
            if objective.is_style_transfer:
                content_per_layer = {layer: losses.content_loss_for_layer(
                    getattr(self.noise_model, layer), content_features[layer]) for layer in content_layers}
                content = tf.add_n([weight * content_per_layer[layer]
                                    for layer, weight in content_layers.items()])
                tv = losses.total_variation_loss(self.image)
                terms += [objective.content_weight * content, objective.tv_weight * tv]
                self.losses.update(style=style, content=content, tv=tv)
                if len(content_layers) > 1:
                    self.losses.update({f'content_{layer}': loss for layer, loss in content_per_layer.items()})
            self.total = tf.add_n(terms)
            self.losses.update(total=self.total, **per_layer)
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
                    # Adam knows no bounds: project back onto valid pixels after each step.
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
    """scipy's L-BFGS-B, one call, turned into a generator by a worker thread."""
    shape = start.shape
    last = {}  # the latest evaluation: scipy's callback gets x but not f

    def loss_and_gradient(x):
        graph.set_image(x.reshape(shape).astype(np.float32))
        values, gradient = graph.evaluate()
        last.update(x=x.copy(), values=values)
        return values['total'], gradient.ravel().astype(np.float64)

    # `steps` is unbounded so the worker never blocks on it after the consumer has gone.
    steps, resume = queue.Queue(), queue.Queue(maxsize=1)
    stop = object()

    def callback(x):
        if not np.array_equal(x, last['x']):
            loss_and_gradient(x)
        steps.put((x.reshape(shape).astype(np.float32), last['values']))
        if resume.get() is stop:
            raise StopIteration  # scipy stops on StopIteration raised in a callback

    def worker():
        try:
            scipy.optimize.minimize(loss_and_gradient, start.ravel().astype(np.float64), jac=True,
                                    method='L-BFGS-B',
                                    bounds=scipy.optimize.Bounds(np.zeros(start.size), np.ones(start.size)),
                                    callback=callback, options={'maxiter': iterations, **LBFGS_OPTIONS})
            steps.put(None)
        except BaseException as error:  # hand any failure to the consumer thread
            steps.put(error)

    yield 0, start, graph.evaluate()[0]  # before the worker starts: one thread at a time
    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    step = 0
    try:
        while True:
            item = steps.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            step += 1
            yield (step, *item)
            resume.put(None)
    finally:
        if thread.is_alive():
            # The consumer stopped early (Ctrl-C, break): let scipy finish its call and wait.
            resume.put(stop)
            thread.join()


def synthesize(weights, objective, output_shape, pooling='avg', optimizer='lbfgs',
               iterations=200, seed=0, init='mean-noise', initial_image=None):
    """Optimise an image towards `objective` (an Objective); yields (step, image, losses).

    The start is `initial_image` if given, else noise of kind `init` around the
    first style image's colours (utils.initial_image).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {optimizer!r}")
    graph = Graph(weights, objective, output_shape, pooling, optimizer)
    try:
        start = (make_initial_image(objective.style_images[0], (*output_shape, 3), seed, init)
                 if initial_image is None else initial_image)
        graph.set_image(start)
        if optimizer == 'adam':
            yield from _adam(graph, start, iterations)
        else:
            yield from _lbfgs(graph, start, iterations)
    finally:
        graph.close()
