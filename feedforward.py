"""Feed-forward texture networks: train generator.py's network on the objective once, then sample.

    stages = [(0.5, 3500, (128, 128)), (1.0, 1000, (256, 256))]    # (scale, steps, sample shape)
    for step, trainer, losses in train(weights, objective, stages, batch_size=1):   # one Adam step each
        ...
    save_checkpoint(trainer.state(), 'generator.npz', settings)
    sampler = Sampler(trainer.state())
    image = sampler.sample(seed=0, shape=(1024, 1024))               # [1024, 1024, 3] in [0, 1]

The objective is synthesize.objective_losses, the one the pixel optimisation
minimises, built on a batch of generated images (Ulyanov et al. 2016). Every
step draws a new batch of noise, from (seed, step), so a resumed run draws what
the uninterrupted one would have. A checkpoint holds every variable of the
training graph: the generator's weights, Adam's moments and the step.
"""
import os
import shutil

import numpy as np
import utils  # noqa: F401  before TensorFlow: it turns oneDNN on where TensorFlow would not
import tensorflow as tf

import generator
import generator_design
import synthesize
import vgg16
from options import GENERATOR_LEARNING_RATE
from utils import InputError

# The last quarter of the last stage's steps at a fifth of the rate: Adam's steps then stop stirring
# what the generator has learnt (texture1, 210 s of training at one size: SWD 114 against 119 without).
FINE_TUNE_FROM, FINE_TUNE_FACTOR = 0.75, 0.2
PREVIEW_SEEDS = (0, 1, 2, 3)  # the samples drawn into steps/ and comparison.png, the same at every step


class Trainer:
    """The training graph: noise -> generator -> a batch of images -> the objective's losses; Adam.

    `fine_tune_from`: the step from which the learning rate is FINE_TUNE_FACTOR of itself (None:
    never). Previews (samples()) are drawn at `preview_shape`, by default the samples' shape.
    """

    def __init__(self, weights, objective, sample_shape, batch_size, pooling='avg', precision='float32',
                 tileable=False, seed=0, learning_rate=GENERATOR_LEARNING_RATE, fine_tune_from=None, state=None,
                 preview_shape=None):
        self.graph = tf.Graph()
        self.sample_shape = tuple(sample_shape)
        with self.graph.as_default():
            shared = vgg16.weight_tensors(weights, up_to=vgg16.deepest(list(objective.layer_weights)))
            self.session = tf.compat.v1.Session(graph=self.graph, config=synthesize.session_config())
            statistics = synthesize.source_statistics(self.session, shared, objective, pooling, tileable)
            self.step = tf.compat.v1.train.get_or_create_global_step()
            height, width = self.sample_shape
            noise = generator.noise_inputs(tf.stack([tf.constant(seed, tf.int64), self.step + 1]), batch_size,
                                           *generator_design.canvas_shape(height, width))
            mean_colour = np.mean([image.reshape(-1, 3).mean(axis=0) for image in objective.style_images], axis=0)
            # The generator's convolutions in the VGG half's precision: bfloat16 took 809 steps where
            # float32 took 725 in 210 s, and ended lower (docs/feedforward.md). Samples are float32.
            dtype = tf.bfloat16 if precision == 'bfloat16' else tf.float32
            images = generator.build(noise, mean_colour, dtype)[:, :height, :width]
            total, self.losses, _ = synthesize.objective_losses(
                shared, objective, statistics, images, pooling, precision, tileable, normalise_gradients=True)
            if fine_tune_from is not None:
                learning_rate = tf.compat.v1.train.piecewise_constant(
                    self.step, [tf.constant(fine_tune_from, tf.int64)],
                    [learning_rate, learning_rate * FINE_TUNE_FACTOR])
            optimiser = tf.compat.v1.train.AdamOptimizer(learning_rate)
            self.update = optimiser.minimize(total, global_step=self.step,
                                             var_list=list(generator.variables().values()))
            # The preview: fixed seeds, the samples sample.py would draw.
            self.preview_seed = tf.compat.v1.placeholder(tf.int64, [], 'preview_seed')
            self.preview = _sample_graph(self.preview_seed, *(preview_shape or self.sample_shape))
            self.variables = {variable.op.name: variable for variable in tf.compat.v1.global_variables()}
            self.loaders = {name: _loader(variable) for name, variable in self.variables.items()}
            self.session.run(tf.compat.v1.global_variables_initializer())
        self.graph.finalize()
        if state is not None:
            self.load(state)

    def train_step(self):
        """One Adam step on a new batch; the losses of that batch, before the step."""
        _, values = self.session.run([self.update, self.losses])
        return {name: float(value) for name, value in values.items()}

    @property
    def steps_done(self):
        return int(self.session.run(self.step))

    def state(self):
        """Every variable's value, by name: what a checkpoint holds."""
        return self.session.run(self.variables)

    def load(self, state):
        """Set every variable from `state`, which must hold exactly this graph's variables."""
        _check_state(state, {name: tuple(variable.shape) for name, variable in self.variables.items()})
        _load(self.session, self.loaders, state)

    def samples(self, seeds=PREVIEW_SEEDS):
        return [self.session.run(self.preview, {self.preview_seed: seed})[0] for seed in seeds]

    def close(self):
        self.session.close()


def train(weights, objective, stages, batch_size, pooling='avg', precision='float32', tileable=False, seed=0,
          learning_rate=GENERATOR_LEARNING_RATE, state=None, preview_shape=None):
    """Yields (step, trainer, losses) after each Adam step, through `stages`, [(scale, steps,
    (height, width) of the samples)]: one Trainer per stage, built from the last one's state
    (or `state`, a checkpoint's: stages it has done are skipped). Steps count on across stages;
    with several stages each losses dict also holds its 'scale'. The trainer of the last step
    is left open (what it has learnt is the caller's to save); earlier ones are closed."""
    ends = np.cumsum([steps for _, steps, _ in stages])
    trainer = None
    for (scale, steps, shape), end in zip(stages, ends):
        done = trainer.steps_done if trainer else int(state['global_step']) if state else 0
        if done >= end:
            continue
        previous = trainer
        trainer = Trainer(weights, objective, shape, batch_size, pooling, precision, tileable, seed, learning_rate,
                          fine_tune_step(stages), previous.state() if previous else state, preview_shape)
        while trainer.steps_done < end:
            try:
                losses = trainer.train_step()
            except BaseException:
                if previous is not None:  # the caller saves the previous stage's trainer, its last yield
                    trainer.close()
                raise
            if previous is not None:  # only once the new stage has a step: until then the caller holds the old
                previous.close()
                previous = None
            yield trainer.steps_done, trainer, {**losses, 'scale': scale} if len(stages) > 1 else losses


def fine_tune_step(stages):
    """The step from which the learning rate drops: FINE_TUNE_FROM of the way through the last stage."""
    before = sum(steps for _, steps, _ in stages[:-1])
    return before + int(FINE_TUNE_FROM * stages[-1][1])


def _sample_graph(seed, height, width):
    """One sample [1, height, width, 3] for `seed` (an int64 scalar tensor): the network's canvas
    (sides rounded up to generator_design.COARSEST), its top-left corner kept."""
    # canvas_shape's rounding, on tensors: height and width are the SavedModel's inputs.
    coarsest = generator_design.COARSEST
    canvas_height = (height + coarsest - 1) // coarsest * coarsest
    canvas_width = (width + coarsest - 1) // coarsest * coarsest
    noise = generator.noise_inputs(tf.stack([seed, tf.constant(0, tf.int64)]), 1, canvas_height, canvas_width)
    return generator.build(noise)[:, :height, :width]


def _loader(variable):
    placeholder = tf.compat.v1.placeholder(variable.dtype.base_dtype, variable.shape)
    return variable.assign(placeholder), placeholder


def _load(session, loaders, state):
    """Every variable set from `state` in one run: one run per variable cost 0.16 s each, 21 s in all."""
    assigns = [assign for assign, _ in loaders.values()]
    session.run(assigns, {placeholder: state[name] for name, (_, placeholder) in loaders.items()})


def _check_state(state, expected):
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise InputError(f"the checkpoint does not fit this generator: "
                         f"{'missing ' + ', '.join(missing[:3]) if missing else ''}"
                         f"{'; ' if missing and unexpected else ''}"
                         f"{'unexpected ' + ', '.join(unexpected[:3]) if unexpected else ''}")
    for name, shape in expected.items():
        if tuple(np.shape(state[name])) != shape:
            raise InputError(f"the checkpoint does not fit this generator: {name} is "
                             f"{np.shape(state[name])}, expected {shape}")


# ---------------------------------------------------------------- sampling and export

class Sampler:
    """A trained generator, ready to sample any size: sample(seed, (height, width)) -> [H, W, 3].

    The same graph is what export() saves as a SavedModel, so a sample from either is the same image.
    """

    def __init__(self, state):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.seed = tf.compat.v1.placeholder(tf.int64, [], 'seed')
            self.height = tf.compat.v1.placeholder(tf.int32, [], 'height')
            self.width = tf.compat.v1.placeholder(tf.int32, [], 'width')
            self.image = tf.identity(_sample_graph(self.seed, self.height, self.width), 'image')
            variables = generator.variables()
            generator_state = {name: value for name, value in state.items() if name.startswith(generator.SCOPE + '/')
                               and name in variables}
            _check_state(generator_state, {name: tuple(variable.shape) for name, variable in variables.items()})
            self.parameters = int(sum(np.size(value) for value in generator_state.values()))
            self.saver = tf.compat.v1.train.Saver(sharded=True)  # made now: export() must not add to the graph
            self.session = tf.compat.v1.Session(graph=self.graph, config=synthesize.session_config())
            _load(self.session, {name: _loader(variable) for name, variable in variables.items()}, generator_state)
        self.graph.finalize()

    def sample(self, seed, shape):
        height, width = shape
        return self.session.run(self.image, {self.seed: seed, self.height: height, self.width: width})[0]

    def export(self, path):
        """Write the SavedModel (a signature 'serving_default': seed int64, height and width int32
        scalars in, 'image' float32 [1, height, width, 3] in [0, 1] out) to `path`, atomically:
        into a temporary folder beside it, then renamed over the old one."""
        temporary = f'{path}.{os.getpid()}.tmp'
        previous = f'{path}.{os.getpid()}.old'
        try:
            with utils.quiet_stderr():  # the TF1 builder warns that it is a TF1 API: it is, on purpose
                self._save(temporary)
            if os.path.exists(path):
                os.replace(path, previous)
            os.replace(temporary, path)
        finally:
            for leftover in (temporary, previous):
                shutil.rmtree(leftover, ignore_errors=True)
        return path

    def _save(self, folder):
        builder = tf.compat.v1.saved_model.Builder(folder)
        with self.graph.as_default():
            signature = tf.compat.v1.saved_model.predict_signature_def(
                inputs={'seed': self.seed, 'height': self.height, 'width': self.width},
                outputs={'image': self.image})
            builder.add_meta_graph_and_variables(
                self.session, [tf.compat.v1.saved_model.SERVING],
                signature_def_map={'serving_default': signature}, strip_default_attrs=True, saver=self.saver)
        builder.save()

    def close(self):
        self.session.close()


def preview_sheet(source, samples, labels=None):
    """[(image, label)] for a sheet: the source first, then the samples."""
    labels = labels or [f'seed {seed}' for seed in PREVIEW_SEEDS[:len(samples)]]
    return [(source, 'source')] + list(zip(samples, labels))
